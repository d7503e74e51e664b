"""Scratch databases for the tests: created with unique names, always dropped.

The server comes from TEST_DATABASE_URL, else from DATABASE_URL (the service's own
setting); the tests never touch the database that URL names, only ones they create.
Each gets two users of its own, made as production's are (`kit/migrations/roles.py`):
an owner that migrates, and the service's user that the tests serve as.
"""

import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import pytest
from sqlalchemy import URL
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from {{ package_name }}.kit.db.dialects.mysql import CHARACTER_SET
from {{ package_name }}.kit.db.dialects.mysql import COLLATION
from {{ package_name }}.kit.migrations.roles import create_roles
from {{ package_name }}.settings import Settings

HOW_TO_GET_ONE = (
    "The tests need a MariaDB or MySQL server where this user may CREATE DATABASE and USER.\n"
    "Start one (Debian: `start-stop-daemon --start --oknodo --background --exec "
    "/usr/sbin/mariadbd`; Docker: `docker compose up -d db`), or set "
    "TEST_DATABASE_URL=mysql://root@host:3306/mysql."
)


@dataclass(frozen=True)
class ScratchDatabase:
    owner: URL  # owns the tables and migrates: DATABASE_OWNER_URL
    service: URL  # reads and writes rows, nothing else: DATABASE_URL


def server_url() -> URL:
    source = os.environ.get("TEST_DATABASE_URL")
    settings = Settings(database_url=source) if source else Settings()
    return settings.database_url


async def admin(*statements: str) -> list[object]:
    url = server_url().set(database="mysql")
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            results: list[object] = []
            for statement in statements:
                result = await conn.execute(text(statement))
                results.append(result.all() if result.returns_rows else None)
            return results
    except (OSError, TimeoutError, DBAPIError) as error:
        if (
            "Access denied" in str(error)
            or "Can't connect" in str(error)
            or isinstance(error, OSError)
        ):
            pytest.fail(
                f"MariaDB is not usable at {url.host}:{url.port or 3306} ({error}).\n"
                + HOW_TO_GET_ONE,
                pytrace=False,
            )
        raise
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_database(label: str) -> AsyncIterator[ScratchDatabase]:
    """A database of its own, in the character set and collation the service's tables
    declare, and its two users."""
    suffix = uuid.uuid4().hex[:16]
    name = f"test_{{ package_name[:20] }}_{label}_{suffix[:8]}"
    server = server_url().set(database=name)
    database = ScratchDatabase(  # MySQL's user names: <= 32 characters
        owner=server.set(username=f"t_o_{suffix}", password=secrets.token_hex(12)),
        service=server.set(username=f"t_s_{suffix}", password=secrets.token_hex(12)),
    )
    await admin(f"CREATE DATABASE `{name}` CHARACTER SET {CHARACTER_SET} COLLATE {COLLATION}")
    try:
        engine = create_async_engine(server)
        try:
            async with engine.begin() as conn:
                roles = Settings(database_url=database.service, database_owner_url=database.owner)
                await create_roles(conn, roles)
        finally:
            await engine.dispose()
        yield database
    finally:
        users = (database.owner.username, database.service.username)
        await admin(
            f"DROP DATABASE IF EXISTS `{name}`",
            *(f"DROP USER IF EXISTS '{user}'@'%'" for user in users),
        )
