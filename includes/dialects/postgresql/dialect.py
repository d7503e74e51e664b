"""PostgreSQL through asyncpg: what the service needs to know of its database.

Every backend-specific choice lives in this module (the template renders the one for
the database it was asked for): connection arguments, how errors are recognised, and
how an INSERT yields to a concurrent one.
"""

import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from typing import TypeVar

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.config import Settings

T = TypeVar("T")

# SQLSTATE classes: https://www.postgresql.org/docs/current/errcodes-appendix.html
_VIOLATIONS = {
    "23505": "unique",
    "23503": "foreign_key",
    "23514": "check",
    "23502": "not_null",
}
_RETRYABLE = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def engine_options(settings: Settings, *, read_only: bool = False) -> dict[str, Any]:
    """Server settings travel in asyncpg's start-up packet: no extra round trip per connection.

    Read-only connections (for `ReadSession`) are read-only in the server itself, and run
    in autocommit: no BEGIN and COMMIT around a request's reads (two round trips saved).
    Under READ COMMITTED a transaction gives each statement its own snapshot anyway, so
    a read request sees exactly what it would inside one.
    """
    server_settings = {"application_name": settings.db_application_name}
    if read_only:
        server_settings["default_transaction_read_only"] = "on"
    if settings.db_statement_timeout_ms:
        server_settings["statement_timeout"] = str(settings.db_statement_timeout_ms)
    if settings.db_idle_in_transaction_timeout_ms:
        server_settings["idle_in_transaction_session_timeout"] = str(
            settings.db_idle_in_transaction_timeout_ms
        )
    connect_args = {"timeout": settings.db_connect_timeout, "server_settings": server_settings}
    options: dict[str, Any] = {
        "pool_recycle": settings.db_pool_recycle,
        "connect_args": connect_args,
    }
    if read_only:
        options["isolation_level"] = "AUTOCOMMIT"
    return options


def prepare(engine: Engine, settings: Settings, *, read_only: bool = False) -> None:
    """Nothing to run per connection: `engine_options` already carries the settings."""


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def violation(error: DBAPIError) -> str | None:
    """Which kind of integrity rule `error` broke: unique, foreign_key, check, not_null."""
    return _VIOLATIONS.get(_sqlstate(error) or "")


def violated_constraint(error: DBAPIError) -> str | None:
    name = getattr(getattr(error.orig, "__cause__", None), "constraint_name", None)
    return name if isinstance(name, str) else None


def is_retryable(error: DBAPIError) -> bool:
    """The transaction lost a race (deadlock, serialization failure): run it again."""
    return _sqlstate(error) in _RETRYABLE


@asynccontextmanager
async def migration_lock(connection: AsyncConnection, name: str) -> AsyncIterator[None]:
    """A session-level advisory lock: replicas starting together migrate one at a time."""
    key = zlib.crc32(name.encode())
    await connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
    try:
        yield
    finally:
        await connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


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
