"""Scratch databases for the tests: created with unique names, always dropped.

The server comes from TEST_DATABASE_URL, else from DATABASE_URL (the service's own
setting); the tests never touch the database that URL names, only ones they create.
"""

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import URL
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from {{ package_name }}.kit.db.dialect import one_off_connect_args
from {{ package_name }}.settings import Settings

HOW_TO_GET_ONE = (
    "The tests need a PostgreSQL server where this user may CREATE DATABASE.\n"
    "Start one (Debian: `pg_ctlcluster <version> main start`; Docker: "
    "`docker compose up -d db`), or set TEST_DATABASE_URL=postgresql://user@host:5432/postgres."
)


def server_url() -> URL:
    source = os.environ.get("TEST_DATABASE_URL")
    settings = Settings(database_url=source) if source else Settings()
    return settings.database_url


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
async def scratch_database(label: str) -> AsyncIterator[URL]:
    name = f"test_{{ package_name[:30] }}_{label}_{uuid.uuid4().hex[:10]}"
    await admin(f'CREATE DATABASE "{name}"')
    try:
        yield server_url().set(database=name)
    finally:
        # Retried: a server busy with other test runs may refuse one connection.
        for attempt in range(3):
            try:
                await admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except BaseException:
                if attempt == 2:
                    raise
                await asyncio.sleep(1)
