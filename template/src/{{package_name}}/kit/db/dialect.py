"""What the service needs to know of its database, asked of the backend in use.

Each function hands over to the backend module (`dialects/`) of the URL, engine,
connection or session it is given; an error is the backend's whose driver raised it.
"""

import importlib.util
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from typing import TypeVar

from sqlalchemy.engine import URL
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession

from ..settings import Settings
from .dialects import BACKENDS
from .dialects import backend
from .dialects import backend_of_error
from .dialects import backend_of_url
from .dialects.mysql import CHARACTER_SET
from .dialects.mysql import COLLATION

T = TypeVar("T")

# Options every table declares. Prefixed with the dialect's name, they reach only that
# dialect's DDL: MariaDB and MySQL store full Unicode whatever the server's default;
# SQLite's INTEGER PRIMARY KEY is AUTOINCREMENT, so a deleted row's key is never given to
# the next row (without it SQLite takes the largest key + 1). AUTOINCREMENT leaves other
# keys alone (UUID, composite), and SQLite refuses it on a BIGINT key: declare an integer
# key INTEGER there (`IntKey` does), or give the table `sqlite_autoincrement=False`.
TABLE_OPTIONS: dict[str, str | bool] = {
    "mysql_charset": CHARACTER_SET,
    "mysql_collate": COLLATION,
    "sqlite_autoincrement": True,
}


def _installed_drivers_lost_connection() -> tuple[type[Exception], ...]:
    """The drivers' own errors for a connection that is gone, where SQLAlchemy does not
    wrap them, of every backend whose driver is installed."""
    found: list[type[Exception]] = []
    for name in BACKENDS:
        driver = {"postgresql": "asyncpg", "mysql": "asyncmy", "sqlite": "aiosqlite"}[name]
        if importlib.util.find_spec(driver) is not None:
            found += backend(name).LOST_CONNECTION
    return tuple(found)


LOST_CONNECTION = _installed_drivers_lost_connection()


def one_off_connect_args(url: URL | str) -> dict[str, Any]:
    """Connect arguments for a short-lived engine (migrations, test set-up) on `url`."""
    return dict(backend_of_url(url).ONE_OFF_CONNECT_ARGS)


def engine_options(settings: Settings, *, read_only: bool = False) -> dict[str, Any]:
    """`create_async_engine`'s options for the service's database."""
    return backend_of_url(settings.database_url).engine_options(settings, read_only=read_only)


def prepare(engine: Engine, settings: Settings, *, read_only: bool = False) -> None:
    """Set up every connection `engine` opens, as its backend needs."""
    backend(engine.dialect.name).prepare(engine, settings, read_only=read_only)


async def configure_server(connection: AsyncConnection, settings: Settings) -> None:
    """What the service sets on the server at start-up (PgBouncer's role settings)."""
    await backend(connection.dialect.name).configure_server(connection, settings)


def pooler_limit(settings: Settings) -> tuple[str, int | None] | None:
    """The setting holding a pooler's client limit, and that limit; None: no pooler."""
    return backend_of_url(settings.database_url).pooler_limit(settings)


async def max_connections(connection: AsyncConnection, settings: Settings) -> int | None:
    """How many connections the server takes in all (None: no limit)."""
    return await backend(connection.dialect.name).max_connections(connection, settings)


def misconfigured(error: BaseException, url: URL) -> str | None:
    """What to fix, when connecting to `url` failed for a reason retrying will not cure."""
    return backend_of_url(url).misconfigured(error, url)


async def without_statement_timeout(connection: AsyncConnection) -> None:
    """For migrations: they take as long as they take."""
    await backend(connection.dialect.name).without_statement_timeout(connection)


def violation(error: DBAPIError) -> str | None:
    """Which kind of integrity rule `error` broke: unique, foreign_key, check, not_null."""
    of = backend_of_error(error)
    return None if of is None else of.violation(error)


def refused_value(error: DBAPIError) -> str | None:
    """Why the database refused a value `error` was raised for; None when not that."""
    of = backend_of_error(error)
    return None if of is None else of.refused_value(error)


def violated_constraint(error: DBAPIError) -> str | None:
    """The name of the constraint `error` reports broken, when it can be told."""
    of = backend_of_error(error)
    return None if of is None else of.violated_constraint(error)


def is_retryable(error: DBAPIError) -> bool:
    """The transaction lost a race (deadlock, serialization failure): run it again."""
    of = backend_of_error(error)
    return False if of is None else of.is_retryable(error)


@asynccontextmanager
async def migration_lock(
    connection: AsyncConnection, name: str, lock_timeout_ms: int
) -> AsyncIterator[None]:
    """The lock under which replicas starting together migrate one at a time; inside it
    a statement waits `lock_timeout_ms` for its table locks (0: the server's own limit)."""
    async with backend(connection.dialect.name).migration_lock(connection, name, lock_timeout_ms):
        yield


def lock_timed_out(error: DBAPIError) -> bool:
    """A statement waited for a table lock longer than the migration's lock timeout."""
    of = backend_of_error(error)
    return False if of is None else of.lock_timed_out(error)


async def insert_or_none(
    session: AsyncSession, model: type[T], values: dict[str, Any], keys: list[str]
) -> T | None:
    """INSERT a row, or None if a row with `keys` exists: a concurrent INSERT of the same
    keys waits for this one, so exactly one caller creates the row."""
    name = session.get_bind().dialect.name
    return await backend(name).insert_or_none(session, model, values, keys)
