"""PostgreSQL through asyncpg: what the service needs to know of its database.

Every choice particular to PostgreSQL lives in this module, which
`kit/db/dialects/__init__.py` picks for a `postgresql` URL: connection arguments, how
errors are recognised, the migration lock, how an INSERT yields to a concurrent one, and
how times are stored.
"""

import asyncio
import logging
import socket
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from typing import Protocol
from typing import TypeVar

# asyncpg ships no type information, and only a service on PostgreSQL installs it.
import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]
from sqlalchemy import DateTime
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import URL
from sqlalchemy.engine import Engine
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

T = TypeVar("T")
log = logging.getLogger(__name__)


class Settings(Protocol):
    """The settings this module reads: the service's settings, on this backend."""

    database_url: URL
    db_application_name: str
    db_connect_timeout: float
    db_pool_recycle: int
    db_behind_pgbouncer: bool
    db_pgbouncer_max_client_conn: int | None
    db_statement_timeout_ms: int
    db_idle_in_transaction_timeout_ms: int


# SQLSTATE classes: https://www.postgresql.org/docs/current/errcodes-appendix.html
_VIOLATIONS = {
    "23505": "unique",
    "23503": "foreign_key",
    "23514": "check",
    "23502": "not_null",
}
_RETRYABLE = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

# The driver's own errors for a connection that is gone, raised where SQLAlchemy does not
# wrap them (setting up a new connection that the server ends at that moment).
LOST_CONNECTION: tuple[type[Exception], ...] = (asyncpg.InterfaceError,)

# Connect arguments for a short-lived engine (migrations, test set-up): nothing is
# prepared for reuse, so it works through PgBouncer in transaction mode too.
ONE_OFF_CONNECT_ARGS: dict[str, Any] = {
    "statement_cache_size": 0,
    "prepared_statement_cache_size": 0,
}


def engine_options(settings: Settings, *, read_only: bool = False) -> dict[str, Any]:
    """Server settings travel in asyncpg's start-up packet: no extra round trip per connection.

    Read-only connections (for `ReadSession`) are read-only in the server itself, and run
    in autocommit: no BEGIN and COMMIT around a request's reads (two round trips saved).
    Under READ COMMITTED a transaction gives each statement its own snapshot anyway, so
    a read request sees exactly what it would inside one.

    Behind PgBouncer in transaction mode each transaction (each statement, in autocommit)
    may run on another server connection, and start-up parameters other than a few are
    refused: nothing is prepared for reuse, the timeouts come from `configure_server`, and
    reads run in READ ONLY transactions instead.
    """
    server_settings = {"application_name": settings.db_application_name}
    connect_args: dict[str, Any] = {"timeout": settings.db_connect_timeout}
    options: dict[str, Any] = {"pool_recycle": settings.db_pool_recycle}
    if settings.db_behind_pgbouncer:
        connect_args |= {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
        if read_only:
            options["execution_options"] = {"postgresql_readonly": True}
    else:
        server_settings |= _timeouts(settings)
        if read_only:
            server_settings["default_transaction_read_only"] = "on"
            options["isolation_level"] = "AUTOCOMMIT"
    options["connect_args"] = connect_args | {"server_settings": server_settings}
    return options


def _timeouts(settings: Settings) -> dict[str, str]:
    """The server-side timeouts that are set, in milliseconds (0 leaves the server's own)."""
    timeouts = {
        "statement_timeout": settings.db_statement_timeout_ms,
        "idle_in_transaction_session_timeout": settings.db_idle_in_transaction_timeout_ms,
    }
    return {name: str(value) for name, value in timeouts.items() if value}


def prepare(engine: Engine, settings: Settings, *, read_only: bool = False) -> None:
    """A connection the server ended on purpose (SQLSTATE class 57P: an administrator's
    or a shutdown's termination, a crash, "cannot connect now") is a lost connection:
    the pool discards it, and a read or a unit of work runs again on a new one."""

    @event.listens_for(engine, "handle_error")
    def _server_ended_the_connection(context: ExceptionContext) -> None:
        if str(getattr(context.original_exception, "sqlstate", "")).startswith("57P"):
            context.is_disconnect = True


async def configure_server(connection: AsyncConnection, settings: Settings) -> None:
    """Behind PgBouncer: the timeouts are the database's settings, which the migrations set
    as the owner (`kit/migrations/roles.py`); the service only checks them, and says
    which step was missed when they differ. It changes nothing on the server: its role
    may not."""
    if not settings.db_behind_pgbouncer:
        return
    wanted = _timeouts(settings)
    for name in ("statement_timeout", "idle_in_transaction_session_timeout"):
        found = await connection.scalar(
            text("SELECT setting FROM pg_settings WHERE name = :name"), {"name": name}
        )
        if str(found) != wanted.get(name, "0"):
            log.warning(
                "behind PgBouncer %s is %s ms on the server, not %s ms as the settings say: "
                "it is set by the migrations, so run `alembic upgrade head` (as "
                "DATABASE_OWNER_URL) with these settings",
                name,
                found,
                wanted.get(name, "0"),
            )


def pooler_limit(settings: Settings) -> tuple[str, int | None] | None:
    """Behind PgBouncer the pools are its clients: the setting that holds its client
    limit, and that limit (None when unset). None: the pools reach the server itself."""
    if not settings.db_behind_pgbouncer:
        return None
    return "DB_PGBOUNCER_MAX_CLIENT_CONN", settings.db_pgbouncer_max_client_conn


async def max_connections(connection: AsyncConnection, settings: Settings) -> int | None:
    """How many connections the server takes in all."""
    return int((await connection.execute(text("SHOW max_connections"))).scalar_one())


def misconfigured(error: BaseException, url: URL) -> str | None:
    """What to fix, when connecting failed for a reason that retrying will not cure; None
    when it may be transient (refused, timed out, the server starting or full)."""
    where = f"{url.host}:{url.port or 5432}"
    sqlstate = getattr(error, "sqlstate", None)
    if sqlstate == "3D000":
        return (
            f'database "{url.database}" does not exist on {where}: create it '
            f"(createdb -h {url.host} -U {url.username} {url.database}), or fix DATABASE_URL"
        )
    if sqlstate in {"28000", "28P01"}:
        return f"{where} refused user {url.username!r} ({error}): fix DATABASE_URL's credentials"
    if isinstance(error, socket.gaierror):
        return f"unknown host {url.host!r} ({error.strerror}): fix DATABASE_URL's host"
    return None


async def without_statement_timeout(connection: AsyncConnection) -> None:
    """For migrations: they take as long as they take (the role may set a timeout)."""
    await connection.execute(text("SET statement_timeout = 0"))
    await connection.commit()


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def violation(error: DBAPIError) -> str | None:
    """Which kind of integrity rule `error` broke: unique, foreign_key, check, not_null."""
    return _VIOLATIONS.get(_sqlstate(error) or "")


# Class 22, "data exception": the server refused a value. What the client is told.
_REFUSED = {
    "22001": "a text is longer than its column allows",
    "22003": "a number is out of its column's range",
    "22021": "a text holds a character the database cannot store (such as NUL)",
    "22P05": "a text holds a character the database cannot store",
    "22007": "a date or time is not valid",
    "22008": "a date or time is not valid or out of range",
}


def refused_value(error: DBAPIError) -> str | None:
    """Why the database, or asyncpg encoding a parameter, refused a value `error` was
    raised for (the client's input: a 422); None when that is not why."""
    cause: BaseException | None = error.orig
    while cause is not None:
        if isinstance(cause, asyncpg.InterfaceError) and isinstance(cause, ValueError):
            # asyncpg's own DataError: a parameter it cannot encode for its column.
            if isinstance(cause.__cause__, OverflowError):
                return "a number is out of its column's range"
            if isinstance(cause.__cause__, UnicodeError):
                return "a text is not valid Unicode (it holds an unpaired surrogate)"
            return "a value does not fit its column's type"
        sqlstate = str(getattr(cause, "sqlstate", "") or "")
        if sqlstate.startswith("22"):
            return _REFUSED.get(sqlstate, "a value is not valid for its column")
        cause = cause.__cause__
    return None


def violated_constraint(error: DBAPIError) -> str | None:
    name = getattr(getattr(error.orig, "__cause__", None), "constraint_name", None)
    return name if isinstance(name, str) else None


def is_retryable(error: DBAPIError) -> bool:
    """The transaction lost a race (deadlock, serialization failure): run it again."""
    return _sqlstate(error) in _RETRYABLE


_LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout ran out


@asynccontextmanager
async def migration_lock(
    connection: AsyncConnection, name: str, lock_timeout_ms: int
) -> AsyncIterator[None]:
    """A session-level advisory lock: replicas starting together migrate one at a time.

    The lock is tried, a short transaction each time, and between tries the connection
    is idle outside any transaction: a statement waiting for the lock would hold a
    snapshot as long as it waits, and a CREATE INDEX CONCURRENTLY in the migration waits
    for every older snapshot (a deadlock with the waiting replica). Once held, each
    statement has no time limit and `lock_timeout_ms` to get its table locks. The lock
    is released after a rollback, so a failed migration's own error is what the caller
    sees.
    """
    key = zlib.crc32(name.encode())
    await without_statement_timeout(connection)
    pause = 0.05
    try_lock = text("SELECT pg_try_advisory_lock(:key)")
    while not (await connection.execute(try_lock, {"key": key})).scalar():
        await connection.commit()
        await asyncio.sleep(pause)  # as long as the migration takes: no time limit
        pause = min(2 * pause, 1.0)
    await connection.execute(text(f"SET lock_timeout = {int(lock_timeout_ms)}"))
    await connection.commit()
    try:
        yield
    finally:
        await connection.rollback()
        await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        await connection.commit()


def lock_timed_out(error: DBAPIError) -> bool:
    """A statement waited for a table lock longer than `DB_MIGRATION_LOCK_TIMEOUT_MS`."""
    return _sqlstate(error) == _LOCK_NOT_AVAILABLE


async def insert_or_none(
    session: AsyncSession, model: type[T], values: dict[str, Any], keys: list[str]
) -> T | None:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: the new row, or None if `keys` exist.

    A concurrent INSERT of the same keys makes this one wait for it to commit, so
    exactly one caller creates the row and the others see None.
    """
    stmt = (
        insert(model)
        .values(values)
        .on_conflict_do_nothing(index_elements=keys)
        .returning(model)
        .execution_options(populate_existing=True)
    )
    return (await session.scalars(stmt)).one_or_none()


# timestamptz: PostgreSQL stores UTC and hands back aware datetimes.
TIMESTAMP_STORES_ZONE = True


def timestamp_type() -> TypeEngine[datetime]:
    return DateTime(timezone=True)


def current_time_sql() -> str:
    """The database clock, as a column default: the transaction's start, one for every
    replica."""
    return "now()"
