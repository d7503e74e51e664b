"""Scratch databases for the tests: created with unique names, always dropped.

The server comes from TEST_DATABASE_URL, else from DATABASE_URL (the service's own
setting); the tests never touch the database that URL names, only ones they create.
Each gets two roles of its own, made as production's are (`kit/migrations/roles.py`):
an owner that migrates, and the service's role that the tests serve as. Roles belong
to the whole server, so they are dropped with the database.
"""

import asyncio
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

from {{ package_name }}.kit.db.dialect import one_off_connect_args
from {{ package_name }}.kit.migrations.roles import create_roles
from {{ package_name }}.settings import Settings

HOW_TO_GET_ONE = (
    "The tests need a PostgreSQL server where this user may CREATE DATABASE.\n"
    "Start one (Debian: `pg_ctlcluster <version> main start`; Docker: "
    "`docker compose up -d db`), or set TEST_DATABASE_URL=postgresql://user@host:5432/postgres."
)


@dataclass(frozen=True)
class ScratchDatabase:
    owner: URL  # owns the tables and migrates: DATABASE_OWNER_URL
    service: URL  # reads and writes rows, nothing else: DATABASE_URL


def server_settings() -> Settings:
    source = os.environ.get("TEST_DATABASE_URL")
    return Settings(database_url=source) if source else Settings()


def server_url() -> URL:
    return server_settings().database_url


async def admin(statement: str) -> None:
    url = server_url().set(database="postgres")
    engine = create_async_engine(
        url, isolation_level="AUTOCOMMIT", connect_args={"timeout": 5, **one_off_connect_args(url)}
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    except (OSError, TimeoutError, DBAPIError) as error:
        pytest.fail(
            f"PostgreSQL is not reachable at {url.host}:{url.port or 5432} ({error}).\n"
            + HOW_TO_GET_ONE,
            pytrace=False,
        )
    finally:
        await engine.dispose()


@asynccontextmanager
async def scratch_database(label: str) -> AsyncIterator[ScratchDatabase]:
    suffix = uuid.uuid4().hex[:10]
    name = f"test_{{ package_name[:30] }}_{label}_{suffix}"
    server = server_settings()
    # The owner migrates on the server itself, past any pooler (DATABASE_DIRECT_URL).
    direct = server.direct_url.set(database=name)
    database = ScratchDatabase(
        owner=direct.set(username=f"test_owner_{suffix}", password=secrets.token_hex(12)),
        service=server.database_url.set(
            database=name, username=f"test_service_{suffix}", password=secrets.token_hex(12)
        ),
    )
    await admin(f'CREATE DATABASE "{name}"')
    try:
        engine = create_async_engine(direct, connect_args=one_off_connect_args(direct))
        try:
            async with engine.begin() as conn:
                roles = server.model_copy(
                    update={"database_url": database.service, "database_owner_url": database.owner}
                )
                await create_roles(conn, roles)
        finally:
            await engine.dispose()
        yield database
    finally:
        # Retried: a server busy with other test runs may refuse one connection.
        for attempt in range(3):
            try:
                await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                for role in (database.owner.username, database.service.username):
                    await admin(f'DROP ROLE IF EXISTS "{role}"')
                break
            except BaseException:
                if attempt == 2:
                    raise
                await asyncio.sleep(1)
