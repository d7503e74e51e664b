"""MariaDB and MySQL through asyncmy: what the service needs to know of its database.

Every choice particular to MariaDB and MySQL lives in this module, which
`kit/db/dialects/__init__.py` picks for a `mysql` URL: connection set-up, how errors are
recognised, the migration lock, how an INSERT yields to a concurrent one, and how times
are stored. What the server's errors say (numbers, the keys their messages name) is
read in `mysql_errors.py`.

asyncmy rather than aiomysql: both speak the protocol SQLAlchemy supports, but asyncmy's
protocol core is compiled (Cython) and costs less CPU per row, and it ships wheels for
every Python this template supports. aiomysql is pure Python on PyMySQL: the fallback
for a platform without asyncmy wheels (`mysql+aiomysql://`, and swap the dependency).
"""

import asyncio
import math
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from typing import Protocol
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.engine import URL
from sqlalchemy.engine import Engine
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from .mysql_errors import DEADLOCK
from .mysql_errors import LOCK_WAIT_TIMEOUT
from .mysql_errors import NO_SAVEPOINT
from .mysql_errors import REFUSED
from .mysql_errors import SERVER_ENDED
from .mysql_errors import VIOLATIONS
from .mysql_errors import duplicate_key
from .mysql_errors import errno
from .mysql_errors import errno_of
from .mysql_errors import keyed_by
from .mysql_errors import named_constraint

T = TypeVar("T")


class Settings(Protocol):
    """The settings this module reads: the service's settings, on this backend."""

    db_connect_timeout: float
    db_pool_recycle: int
    db_statement_timeout_ms: int
    db_idle_in_transaction_timeout_ms: int


# The driver's own errors for a connection that is gone, where SQLAlchemy does not wrap
# them: none here (asyncmy's reach SQLAlchemy as DBAPI errors).
LOST_CONNECTION: tuple[type[Exception], ...] = ()

# Connect arguments for a short-lived engine (migrations, test set-up): none needed here.
ONE_OFF_CONNECT_ARGS: dict[str, Any] = {}

# Every table stores full Unicode (emoji and all), whatever the server's or database's
# default: a latin1 or utf8mb3 column refuses such text. The collation is one MariaDB
# and MySQL 8 both have, and it tells supplementary characters apart (utf8mb4_unicode_ci
# holds every emoji equal to every other, so two names differing in one would collide).
CHARACTER_SET = "utf8mb4"
COLLATION = "utf8mb4_unicode_520_ci"


def engine_options(settings: Settings, *, read_only: bool = False) -> dict[str, Any]:
    """READ COMMITTED, as on PostgreSQL: each statement sees what others committed
    before it, and InnoDB takes fewer gap locks (so fewer deadlocks) than under its
    default REPEATABLE READ."""
    return {
        "isolation_level": "READ COMMITTED",
        "pool_recycle": settings.db_pool_recycle,
        "connect_args": {"connect_timeout": math.ceil(settings.db_connect_timeout)},
    }


def prepare(engine: Engine, settings: Settings, *, read_only: bool = False) -> None:
    """Per connection: UTC session time zone and the statement and idle timeouts, in the
    spelling of the server it reached (MariaDB and MySQL name them differently).

    Read-only connections (for `ReadSession`) make every transaction READ ONLY, set once
    when the connection opens. Reads keep their transaction: switching a connection to
    autocommit and back costs a round trip each way here, more than the COMMIT saved.
    """

    @event.listens_for(engine, "handle_error")
    def _server_ended_the_connection(context: ExceptionContext) -> None:
        # A shutdown or KILL of this connection is a lost connection: the pool discards
        # it, and a read or a unit of work runs again on a new one.
        if errno_of(context.original_exception) in SERVER_ENDED:
            context.is_disconnect = True

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("SELECT VERSION()")
        version = str(cursor.fetchone()[0])
        statements = ["SET SESSION time_zone = '+00:00'"]
        if read_only:
            statements.append("SET SESSION TRANSACTION READ ONLY")
        if settings.db_statement_timeout_ms:
            statements.append(statement_timeout(version, settings.db_statement_timeout_ms))
        if is_mariadb(version) and settings.db_idle_in_transaction_timeout_ms:
            seconds = math.ceil(settings.db_idle_in_transaction_timeout_ms / 1000)
            statements.append(f"SET SESSION idle_transaction_timeout = {seconds}")
        for statement in statements:
            cursor.execute(statement)
        cursor.close()


def is_mariadb(version: str) -> bool:
    """Whether `SELECT VERSION()` answered `version` from MariaDB rather than MySQL."""
    return "mariadb" in version.lower()


def statement_timeout(version: str, milliseconds: int) -> str:
    """The statement that bounds this session's statements to `milliseconds` (0: no
    bound), in the spelling of the server whose `SELECT VERSION()` is `version`.

    MariaDB: `max_statement_time`, in seconds, for every statement. MySQL has no such
    variable (setting it is an error) and bounds SELECTs only: `max_execution_time`,
    in milliseconds.
    """
    if is_mariadb(version):
        seconds = f"{milliseconds / 1000:.3f}".rstrip("0").rstrip(".")
        return f"SET SESSION max_statement_time = {seconds}"
    return f"SET SESSION max_execution_time = {int(milliseconds)}"


async def configure_server(connection: AsyncConnection, settings: Settings) -> None:
    """Nothing to set on the server: every connection sets its own session (`prepare`)."""


def pooler_limit(settings: Settings) -> tuple[str, int | None] | None:
    """No pooler in front of MariaDB here: the pools reach the server itself."""
    return None


async def max_connections(connection: AsyncConnection, settings: Settings) -> int | None:
    """How many connections the server takes in all."""
    return int((await connection.execute(text("SELECT @@max_connections"))).scalar_one())


def misconfigured(error: BaseException, url: URL) -> str | None:
    """What to fix, when connecting failed for a reason that retrying will not cure; None
    when it may be transient (refused, timed out, the server starting or full)."""
    where = f"{url.host}:{url.port or 3306}"
    code = errno_of(error)
    if code == 1049:
        return (
            f"database {url.database!r} does not exist on {where}: create it "
            f"(CREATE DATABASE `{url.database}` CHARACTER SET {CHARACTER_SET} "
            f"COLLATE {COLLATION}), or fix DATABASE_URL"
        )
    if code == 1044:
        return (
            f"database {url.database!r} does not exist on {where}, or user {url.username!r} "
            "may not use it: create it and grant it, or fix DATABASE_URL"
        )
    if code in {1045, 1698}:
        return f"{where} refused user {url.username!r}: fix DATABASE_URL's credentials"
    if isinstance(error.__cause__, socket.gaierror):
        return f"unknown host {url.host!r}: fix DATABASE_URL's host"
    return None


async def without_statement_timeout(connection: AsyncConnection) -> None:
    """For migrations: they take as long as they take."""
    version = str((await connection.execute(text("SELECT VERSION()"))).scalar_one())
    await connection.execute(text(statement_timeout(version, 0)))
    await connection.commit()


def violation(error: DBAPIError) -> str | None:
    """Which kind of integrity rule `error` broke: unique, foreign_key, check, not_null."""
    return VIOLATIONS.get(errno(error) or 0)


def refused_value(error: DBAPIError) -> str | None:
    """Why the server refused a value `error` was raised for (the client's input: a
    422); None when that is not why. asyncmy raises some of these as OperationalError."""
    return REFUSED.get(errno(error) or 0)


def violated_constraint(error: DBAPIError) -> str | None:
    """The server names the key or constraint in its message; the naming convention
    (`uq_…`, `fk_…`, `ck_…`) picks it out."""
    return named_constraint(error)


def is_retryable(error: DBAPIError) -> bool:
    """InnoDB chose this transaction as a deadlock's victim: run it again.

    InnoDB rolls the victim's whole transaction back, savepoints included, so a deadlock
    inside `begin_nested` reaches the unit of work as the savepoint's rollback failing
    (the deadlock itself is lost on the way). SQLAlchemy names its savepoints, so one
    that is missing means the server ended the transaction: nothing of it was kept, and
    it runs again.
    """
    return errno(error) in {DEADLOCK, NO_SAVEPOINT}


# How long a replica starting up waits for another's migration.
MIGRATION_LOCK_WAIT_SECONDS = 600


@asynccontextmanager
async def migration_lock(
    connection: AsyncConnection, name: str, lock_timeout_ms: int
) -> AsyncIterator[None]:
    """A named server lock: replicas starting together migrate one at a time.

    The lock is tried (GET_LOCK with no wait), a short transaction each time, and
    between tries the connection is idle outside any transaction, holding no metadata
    lock a migration's DDL would wait for. After `MIGRATION_LOCK_WAIT_SECONDS` without
    it, start-up stops: a lock not granted is an error, never a migration run unlocked.
    Once held, statements have no time limit and `lock_timeout_ms` (rounded up to
    seconds) to get their table and row locks.
    """
    key = "migrate:" + name[-50:]
    await without_statement_timeout(connection)
    deadline = time.monotonic() + MIGRATION_LOCK_WAIT_SECONDS
    pause = 0.05
    while True:
        got = (await connection.execute(text("SELECT GET_LOCK(:key, 0)"), {"key": key})).scalar()
        await connection.commit()
        if got == 1:
            break
        if got is None or time.monotonic() > deadline:
            raise RuntimeError(f"could not take the migration lock {key!r} (GET_LOCK gave {got})")
        await asyncio.sleep(pause)
        pause = min(2 * pause, 1.0)
    if lock_timeout_ms:  # 0: the server's own limits
        wait = math.ceil(lock_timeout_ms / 1000)
        await connection.execute(text(f"SET SESSION lock_wait_timeout = {wait}"))
        await connection.execute(text(f"SET SESSION innodb_lock_wait_timeout = {wait}"))
    # No transaction left open: Alembic then records each migration as it lands (DDL
    # commits as it runs here), so a failed upgrade leaves the version where it stopped.
    await connection.commit()
    try:
        yield
    finally:
        await connection.rollback()
        await connection.execute(text("SELECT RELEASE_LOCK(:key)"), {"key": key})


def lock_timed_out(error: DBAPIError) -> bool:
    """A statement waited for a table or row lock longer than `DB_MIGRATION_LOCK_TIMEOUT_MS`."""
    return errno(error) == LOCK_WAIT_TIMEOUT


async def insert_or_none(
    session: AsyncSession, model: type[T], values: dict[str, Any], keys: list[str]
) -> T | None:
    """INSERT in a savepoint: the new row, or None if a row with `keys` exists.

    A concurrent INSERT of the same keys makes this one wait on the unique index until
    the first commits, then fail as a duplicate; only the savepoint is rolled back. A
    duplicate on another unique key (the row's other values are taken) is no row with
    `keys`: its error goes on, and the unit of work answers it as a conflict.
    """
    obj = model(**values)
    try:
        async with session.begin_nested():
            session.add(obj)
    except IntegrityError as error:
        if violation(error) != "unique" or duplicate_key(error) not in keyed_by(model, keys):
            raise
        return None
    return obj


# DATETIME(6) holds no zone: sessions run in UTC, and `types.Timestamp` stores UTC.
TIMESTAMP_STORES_ZONE = False


def timestamp_type() -> TypeEngine[datetime]:
    return DATETIME(fsp=6)


def current_time_sql() -> str:
    """The server's clock, in microseconds, as a column default."""
    return "CURRENT_TIMESTAMP(6)"
