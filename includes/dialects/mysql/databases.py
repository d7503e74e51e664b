"""Scratch databases for the tests: created with unique names, always dropped.

The server comes from TEST_DATABASE_URL, else from DATABASE_URL (the service's own
setting); the tests never touch the database that URL names, only ones they create.
"""

import os
import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import URL
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from {{ package_name }}.kit.db.dialects.mysql import CHARACTER_SET
from {{ package_name }}.kit.db.dialects.mysql import COLLATION
from {{ package_name }}.settings import Settings

HOW_TO_GET_ONE = (
    "The tests need a MariaDB or MySQL server where this user may CREATE DATABASE and USER.\n"
    "Start one (Debian: `start-stop-daemon --start --oknodo --background --exec "
    "/usr/sbin/mariadbd`; Docker: `docker compose up -d db`), or set "
    "TEST_DATABASE_URL=mysql://root@host:3306/mysql."
)


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
async def scratch_database(label: str) -> AsyncIterator[URL]:
    """A database of its own, in the character set and collation the service's tables
    declare, and a user for it."""
    name = f"test_{{ package_name[:20] }}_{label}_{uuid.uuid4().hex[:8]}"
    user, password = f"t_{uuid.uuid4().hex[:16]}", secrets.token_hex(12)  # MySQL: <= 32 chars
    await admin(
        f"CREATE DATABASE `{name}` CHARACTER SET {CHARACTER_SET} COLLATE {COLLATION}",
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT ALL ON `{name}`.* TO '{user}'@'%'",
    )
    try:
        yield server_url().set(database=name, username=user, password=password)
    finally:
        await admin(f"DROP DATABASE IF EXISTS `{name}`", f"DROP USER IF EXISTS '{user}'@'%'")
