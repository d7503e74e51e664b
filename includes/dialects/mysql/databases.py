"""Scratch databases for the tests: created with unique names, always dropped.

The server comes from TEST_DATABASE_URL, else from DATABASE_URL (the service's own
setting); the tests never touch the database that URL names, only ones they create.
Each scratch database gets a user of its own, so an outage can be staged for it alone.
"""

import contextlib
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


async def open_transactions(url: URL) -> int:
    """Sessions of one database that sit inside a transaction doing nothing."""
    (rows,) = await admin(
        "SELECT count(*) FROM information_schema.innodb_trx t "
        "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
        f"WHERE p.db = '{url.database}' AND p.command = 'Sleep'"
    )
    assert isinstance(rows, list)
    return int(rows[0][0])


async def drop_connections(url: URL) -> None:
    """What a restart or failover does to a pool: every session of one database's user
    ends, all at once (one admin connection issues the KILLs back to back)."""
    engine = create_async_engine(server_url().set(database="mysql"), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            sessions = await conn.execute(
                text("SELECT id FROM information_schema.processlist WHERE user = :user"),
                {"user": url.username},
            )
            for session_id in sessions.scalars().all():
                with contextlib.suppress(DBAPIError):  # it may have ended by itself meanwhile
                    await conn.execute(text(f"KILL {int(session_id)}"))
    finally:
        await engine.dispose()


async def cut_off(url: URL) -> None:
    """An outage of one database: its user is locked out and its sessions killed."""
    await admin(f"ALTER USER '{url.username}'@'%' ACCOUNT LOCK")
    await drop_connections(url)


async def reconnect(url: URL) -> None:
    await admin(f"ALTER USER '{url.username}'@'%' ACCOUNT UNLOCK")


@asynccontextmanager
async def scratch_database(
    label: str, *, character_set: str = CHARACTER_SET, collation: str = COLLATION
) -> AsyncIterator[URL]:
    """A database of its own and a user for it; `character_set` and `collation` are the
    database's defaults (a test of a latin1 database passes its own)."""
    name = f"test_{{ package_name[:20] }}_{label}_{uuid.uuid4().hex[:8]}"
    user, password = f"t_{uuid.uuid4().hex[:16]}", secrets.token_hex(12)  # MySQL: <= 32 chars
    await admin(
        f"CREATE DATABASE `{name}` CHARACTER SET {character_set} COLLATE {collation}",
        f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
        f"GRANT ALL ON `{name}`.* TO '{user}'@'%'",
    )
    try:
        yield server_url().set(database=name, username=user, password=password)
    finally:
        await admin(f"DROP DATABASE IF EXISTS `{name}`", f"DROP USER IF EXISTS '{user}'@'%'")


# Backend facts the tests need.
SLOW_QUERY = "SELECT SLEEP(0.1), :marker"
UNREACHABLE_URL = URL.create("mysql+asyncmy", host="127.0.0.1", port=1, database="x")
PLAIN_URL = "mysql://app:s3cr3t@db:3306/app"
FOREIGN_URL = "oracle://app:s3cr3t@db/app"  # no backend of the kit
NO_DATABASE_URL = "mysql://db:3306"
# Values the database refuses, by kind (tests/api/test_errors.py).
REFUSED_VALUES = frozenset({"int32", "int64", "too-long", "surrogate", "huge-text", "date"})
