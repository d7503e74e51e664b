"""SQLite through aiosqlite: what the service needs to know of its database.

Every choice particular to SQLite lives in this module, which
`kit/db/dialects/__init__.py` picks for a `sqlite` URL: connection set-up, how errors
are recognised, how an INSERT yields to a concurrent one, and how times are stored.
"""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from typing import Protocol
from typing import TypeVar

from sqlalchemy import DateTime
from sqlalchemy import event
from sqlalchemy.dialects.sqlite import insert
from sqlalchemy.engine import URL
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

T = TypeVar("T")


class Settings(Protocol):
    """The settings this module reads: the service's settings, on this backend."""

    db_busy_timeout: float


_NAMED = re.compile(r"\b((?:uq|ck|fk|pk)_\w+)")
_UNIQUE_COLUMNS = re.compile(r"UNIQUE constraint failed: (.+)$")

# The driver's own errors for a connection that is gone: a file has none.
LOST_CONNECTION: tuple[type[Exception], ...] = ()

# Connect arguments for a short-lived engine (migrations, test set-up): none needed here.
ONE_OFF_CONNECT_ARGS: dict[str, Any] = {}


def engine_options(settings: Settings, *, read_only: bool = False) -> dict[str, Any]:
    # sqlite3's `timeout` is how long a writer waits for another to finish.
    return {"connect_args": {"timeout": settings.db_busy_timeout}}


def prepare(engine: Engine, settings: Settings, *, read_only: bool = False) -> None:
    """Per connection: foreign keys on, WAL journal, and transactions SQLAlchemy controls.

    The sqlite3 module opens transactions lazily and cannot nest them; handing BEGIN to
    SQLAlchemy makes savepoints (`begin_nested`) and the tests' rollbacks work. Reads
    keep their transaction, which sees a single snapshot of the file; read-only
    connections (for `ReadSession`) refuse every write (`query_only`).
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        if read_only:
            cursor.execute("PRAGMA query_only = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


async def configure_server(connection: AsyncConnection, settings: Settings) -> None:
    """Nothing to set: SQLite has no server."""


def pooler_limit(settings: Settings) -> tuple[str, int | None] | None:
    """No server and no pooler: the pools open the file."""
    return None


async def max_connections(connection: AsyncConnection, settings: Settings) -> int | None:
    """No server, no connection limit."""
    return None


def misconfigured(error: BaseException, url: URL) -> str | None:
    """What to fix, when the file cannot be opened: a file has nothing transient."""
    if "unable to open database file" in str(error):
        return f"cannot open {url.database!r}: does its directory exist and may we write there?"
    return None


async def without_statement_timeout(connection: AsyncConnection) -> None:
    """SQLite has no statement timeout."""


def _message(error: DBAPIError) -> str:
    return str(error.orig)


def violation(error: DBAPIError) -> str | None:
    """Which kind of integrity rule `error` broke: unique, foreign_key, check, not_null."""
    message = _message(error)
    for prefix, kind in (
        ("UNIQUE constraint failed", "unique"),
        ("FOREIGN KEY constraint failed", "foreign_key"),
        ("CHECK constraint failed", "check"),
        ("NOT NULL constraint failed", "not_null"),
    ):
        if message.startswith(prefix):
            return kind
    return None


def refused_value(error: DBAPIError) -> str | None:
    """Why SQLite refused a value `error` was raised for: none of its own. It stores any
    text in any column; what sqlite3 cannot bind (an integer beyond 64 bits, text with
    an unpaired surrogate) the engine reports as a DataError (`kit/db/engine.py`)."""
    if "string or blob too big" in str(error.orig):
        return "a text is longer than the database can store"
    return None


def violated_constraint(error: DBAPIError) -> str | None:
    """SQLite names CHECK constraints, but reports a UNIQUE one by its columns: the
    naming convention (`uq_<table>_<columns>`) turns those back into the name."""
    message = _message(error)
    if named := _NAMED.search(message):
        return named.group(1)
    if columns := _UNIQUE_COLUMNS.search(message):
        qualified = [part.strip() for part in columns.group(1).split(",")]
        table = qualified[0].split(".")[0]
        return "uq_" + table + "_" + "_".join(name.split(".")[1] for name in qualified)
    return None


def is_retryable(error: DBAPIError) -> bool:
    """Another writer won the file lock: run the unit of work again."""
    return "database is locked" in _message(error)


@asynccontextmanager
async def migration_lock(
    connection: AsyncConnection, name: str, lock_timeout_ms: int
) -> AsyncIterator[None]:
    """None needed: one process owns the file, and in WAL mode a migration waiting for a
    writer (DB_BUSY_TIMEOUT) holds up no reader behind it."""
    yield


def lock_timed_out(error: DBAPIError) -> bool:
    """No lock timeout here: a writer that waited too long is "database is locked"."""
    return False


async def insert_or_none(
    session: AsyncSession, model: type[T], values: dict[str, Any], keys: list[str]
) -> T | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the new row, or None if `keys` exist.

    SQLite lets one writer at a time in, so the conflict check cannot race.
    """
    stmt = (
        insert(model)
        .values(values)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(model)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).one_or_none()


# SQLite keeps datetimes as text without a zone: `types.Timestamp` stores UTC.
TIMESTAMP_STORES_ZONE = False


def timestamp_type() -> TypeEngine[datetime]:
    return DateTime()


def current_time_sql() -> str:
    """SQLite's clock, as a column default for rows other tools write; the service sets
    its times itself (`types.Now`)."""
    return "CURRENT_TIMESTAMP"
