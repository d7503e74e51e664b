"""Scratch databases on the server DATABASE_URL names, whichever backend that is.

The tests never touch the database that URL names, only ones they create with unique
names and drop afterwards. Each backend's differences (how to create, cut off, count
open transactions; what it refuses) are a class of their own; `BACKEND` is the one
DATABASE_URL speaks.
"""

import asyncio
import contextlib
import os
import secrets
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from service.kit.db.dialect import one_off_connect_args
from service.kit.db.dialects.mysql import CHARACTER_SET, COLLATION
from service.settings import Settings
from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine


def server_url() -> URL:
    """The server the tests create their databases on: TEST_DATABASE_URL, else DATABASE_URL."""
    source = os.environ.get("TEST_DATABASE_URL")
    settings = Settings(database_url=source) if source else Settings()
    return settings.database_url


class Backend:
    name: str
    # A statement that takes a tenth of a second or more, with a :marker parameter.
    slow_query: str
    # DATABASE_URL as a deployment may spell it, with a password; one without a database.
    plain_url: str
    no_database_url: str
    # What the database answers to a write on a read-only connection.
    read_only_refusal: str
    # Values the database refuses, by kind (test_errors.py).
    refused_values: frozenset[str]

    async def create(self, label: str, **options: str) -> URL:
        raise NotImplementedError

    async def drop(self, url: URL) -> None:
        raise NotImplementedError


class PostgreSQL(Backend):
    name = "postgresql"
    slow_query = "SELECT pg_sleep(0.1), :marker"
    plain_url = "postgres://app:s3cr3t@db:5432/app"
    no_database_url = "postgresql://db:5432"
    read_only_refusal = "read-only transaction"
    refused_values = frozenset(
        {"int32", "int64", "too-long", "nul", "surrogate", "huge-text", "date"}
    )
    how_to_get_one = (
        "The tests need a PostgreSQL server where this user may CREATE DATABASE.\n"
        "Start one (Debian: `pg_ctlcluster <version> main start`), or set "
        "TEST_DATABASE_URL=postgresql://user@host:5432/postgres."
    )

    async def admin(self, statement: str) -> None:
        url = server_url().set(database="postgres")
        engine = create_async_engine(
            url,
            isolation_level="AUTOCOMMIT",
            connect_args={"timeout": 5, **one_off_connect_args(url)},
        )
        try:
            async with engine.connect() as conn:
                await conn.execute(text(statement))
        except (OSError, TimeoutError, DBAPIError) as error:
            pytest.fail(
                f"PostgreSQL is not reachable at {url.host}:{url.port or 5432} ({error}).\n"
                + self.how_to_get_one,
                pytrace=False,
            )
        finally:
            await engine.dispose()

    async def create(self, label: str, **options: str) -> URL:
        name = f"test_kit_{label}_{uuid.uuid4().hex[:10]}"
        await self.admin(f'CREATE DATABASE "{name}"')
        return server_url().set(database=name)

    async def drop(self, url: URL) -> None:
        # Retried: a server busy with other test runs may refuse one connection.
        for attempt in range(3):
            try:
                await self.admin(f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)')
                return
            except BaseException:
                if attempt == 2:
                    raise
                await asyncio.sleep(1)

    async def open_transactions(self, url: URL) -> int:
        server = server_url().set(database="postgres")
        engine = create_async_engine(
            server, isolation_level="AUTOCOMMIT", connect_args=one_off_connect_args(server)
        )
        try:
            async with engine.connect() as conn:
                count = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = :name "
                        "AND state LIKE 'idle in transaction%'"
                    ),
                    {"name": url.database},
                )
        finally:
            await engine.dispose()
        return int(count or 0)

    async def drop_connections(self, url: URL) -> None:
        await self.admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{url.database}'"
        )

    async def cut_off(self, url: URL) -> None:
        await self.admin(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false')
        await self.drop_connections(url)

    async def reconnect(self, url: URL) -> None:
        await self.admin(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')


class MariaDB(Backend):
    """Each scratch database gets a user of its own, so an outage can be staged for it alone."""

    name = "mysql"
    slow_query = "SELECT SLEEP(0.1), :marker"
    plain_url = "mysql://app:s3cr3t@db:3306/app"
    no_database_url = "mysql://db:3306"
    read_only_refusal = "read only transaction"
    refused_values = frozenset({"int32", "int64", "too-long", "surrogate", "huge-text", "date"})
    how_to_get_one = (
        "The tests need a MariaDB or MySQL server where this user may CREATE DATABASE and "
        "USER.\nStart one (Debian: `start-stop-daemon --start --oknodo --background --exec "
        "/usr/sbin/mariadbd`), or set TEST_DATABASE_URL=mysql://root@host:3306/mysql."
    )

    async def admin(self, *statements: str) -> list[Any]:
        url = server_url().set(database="mysql")
        engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
        try:
            async with engine.connect() as conn:
                results: list[Any] = []
                for statement in statements:
                    result = await conn.execute(text(statement))
                    results.append(result.all() if result.returns_rows else None)
                return results
        except (OSError, TimeoutError, DBAPIError) as error:
            if isinstance(error, OSError) or any(
                words in str(error) for words in ("Access denied", "Can't connect")
            ):
                pytest.fail(
                    f"MariaDB is not usable at {url.host}:{url.port or 3306} ({error}).\n"
                    + self.how_to_get_one,
                    pytrace=False,
                )
            raise
        finally:
            await engine.dispose()

    async def create(self, label: str, **options: str) -> URL:
        """Options `character_set` and `collation` are the database's defaults (a test of
        a latin1 database passes its own)."""
        character_set = options.get("character_set", CHARACTER_SET)
        collation = options.get("collation", COLLATION)
        name = f"test_kit_{label}_{uuid.uuid4().hex[:8]}"
        user, password = f"t_{uuid.uuid4().hex[:16]}", secrets.token_hex(12)  # <= 32 chars
        await self.admin(
            f"CREATE DATABASE `{name}` CHARACTER SET {character_set} COLLATE {collation}",
            f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'",
            f"GRANT ALL ON `{name}`.* TO '{user}'@'%'",
        )
        return server_url().set(database=name, username=user, password=password)

    async def drop(self, url: URL) -> None:
        await self.admin(
            f"DROP DATABASE IF EXISTS `{url.database}`", f"DROP USER IF EXISTS '{url.username}'@'%'"
        )

    async def open_transactions(self, url: URL) -> int:
        (rows,) = await self.admin(
            "SELECT count(*) FROM information_schema.innodb_trx t "
            "JOIN information_schema.processlist p ON p.id = t.trx_mysql_thread_id "
            f"WHERE p.db = '{url.database}' AND p.command = 'Sleep'"
        )
        return int(rows[0][0])

    async def drop_connections(self, url: URL) -> None:
        """Every session of the database's user ends, all at once (one admin connection
        issues the KILLs back to back)."""
        engine = create_async_engine(
            server_url().set(database="mysql"), isolation_level="AUTOCOMMIT"
        )
        try:
            async with engine.connect() as conn:
                sessions = await conn.execute(
                    text("SELECT id FROM information_schema.processlist WHERE user = :user"),
                    {"user": url.username},
                )
                for session_id in sessions.scalars().all():
                    with contextlib.suppress(DBAPIError):  # it may have ended meanwhile
                        await conn.execute(text(f"KILL {int(session_id)}"))
        finally:
            await engine.dispose()

    async def cut_off(self, url: URL) -> None:
        await self.admin(f"ALTER USER '{url.username}'@'%' ACCOUNT LOCK")
        await self.drop_connections(url)

    async def reconnect(self, url: URL) -> None:
        await self.admin(f"ALTER USER '{url.username}'@'%' ACCOUNT UNLOCK")


class SQLite(Backend):
    """Files in a temporary directory, removed with it."""

    name = "sqlite"
    slow_query = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
        "SELECT count(*), :marker FROM c"
    )
    plain_url = "sqlite:///./app.db"
    no_database_url = "sqlite://"
    read_only_refusal = "readonly database"
    refused_values = frozenset({"int64", "surrogate"})

    def __init__(self) -> None:
        self.directories: dict[str, tempfile.TemporaryDirectory[str]] = {}

    async def create(self, label: str, **options: str) -> URL:
        directory = tempfile.TemporaryDirectory(prefix=f"test_kit_{label}_")
        path = str(Path(directory.name) / f"{uuid.uuid4().hex[:10]}.db")
        self.directories[path] = directory
        return URL.create("sqlite+aiosqlite", database=path)

    async def drop(self, url: URL) -> None:
        self.directories.pop(str(url.database)).cleanup()


BACKENDS: dict[str, type[Backend]] = {"postgresql": PostgreSQL, "mysql": MariaDB, "sqlite": SQLite}
# The backend this run's DATABASE_URL speaks.
BACKEND = BACKENDS[server_url().get_backend_name()]()
# Backends with a server the service connects to (not a file).
SERVERS = ("postgresql", "mysql")
# A server nothing listens on.
UNREACHABLE_URL = URL.create(
    f"{BACKEND.name}+{server_url().get_driver_name()}", host="127.0.0.1", port=1, database="x"
)
FOREIGN_URL = "oracle://app:s3cr3t@db/app"  # no backend of the kit


@asynccontextmanager
async def scratch_database(label: str, **options: str) -> AsyncIterator[URL]:
    """A new, empty database on the server (options: MariaDB's character set and collation)."""
    url = await BACKEND.create(label, **options)
    try:
        yield url
    finally:
        await BACKEND.drop(url)


def _server() -> PostgreSQL | MariaDB:
    assert isinstance(BACKEND, PostgreSQL | MariaDB), "a server backend's test ran on SQLite"
    return BACKEND


async def open_transactions(url: URL) -> int:
    """Sessions of one database that sit inside a transaction doing nothing."""
    return await _server().open_transactions(url)


async def drop_connections(url: URL) -> None:
    """What a restart or failover does to a pool: every session of one database ends."""
    await _server().drop_connections(url)


async def cut_off(url: URL) -> None:
    """An outage of one database: its sessions end and new connections are refused."""
    await _server().cut_off(url)


async def reconnect(url: URL) -> None:
    await _server().reconnect(url)
