"""Column types and defaults whose spelling depends on the database.

Each picks its form from the dialect it is compiled or run for (`dialects/`), so a
model says `Timestamp` and `inserted_at()` once for every backend.
"""

from collections.abc import Callable
from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy import Dialect
from sqlalchemy import bindparam
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator
from sqlalchemy.types import TypeEngine

from .dialects import BACKENDS
from .dialects import backend

# What a statement compiled without a database (`str(statement)`: a log line, a
# debugger, a library inspecting it) spells for the time types and clocks: SQLAlchemy's
# generic dialect is none of the backends, so they take the standard SQL form there.
_GENERIC_NOW = "CURRENT_TIMESTAMP"


def _stores_zone(dialect: Dialect) -> bool:
    """Whether `dialect`'s timestamps keep their zone; a generic dialect's pass unchanged."""
    return dialect.name not in BACKENDS or backend(dialect.name).TIMESTAMP_STORES_ZONE


def _current_time_sql(dialect: Dialect) -> str:
    if dialect.name not in BACKENDS:
        return _GENERIC_NOW
    return backend(dialect.name).current_time_sql()


class UTCDateTime(TypeDecorator[datetime]):
    """An instant: aware datetimes in and out, stored as the backend stores time.

    PostgreSQL's timestamptz keeps the zone; on the others (DATETIME(6), SQLite's text)
    the column holds UTC without a zone, and values read back are made aware again.
    """

    impl = DateTime
    cache_ok = True

    def __init__(self, fsp: int = 6) -> None:
        # Microseconds on every backend. A migration may spell the precision, as MariaDB's
        # autogenerate did (`UTCDateTime(fsp=6)`); another one is refused, not dropped.
        if fsp != 6:
            raise ValueError(f"UTCDateTime keeps microseconds (fsp=6), not fsp={fsp}")
        super().__init__()
        self.fsp = fsp

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        # The backend's own type, not the driver's adaptation of it (asyncpg's, SQLite's
        # DATETIME): SQLAlchemy adapts it to the driver itself, and autogenerate writes
        # this one into migrations (`render_item` in env.py).
        if dialect.name not in BACKENDS:
            return dialect.type_descriptor(DateTime(timezone=True))
        return backend(dialect.name).timestamp_type()

    # Where the backend keeps the zone, values pass as the driver reads and writes them:
    # the driver's own processing alone, without a call of this type's per value.
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if _stores_zone(dialect):
            return self.impl_instance.bind_processor(dialect)
        return super().bind_processor(dialect)

    def result_processor(self, dialect: Dialect, coltype: Any) -> Callable[[Any], Any] | None:
        if _stores_zone(dialect):
            return self.impl_instance.result_processor(dialect, coltype)
        return super().result_processor(dialect, coltype)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or _stores_zone(dialect):
            return value
        if value.tzinfo is None:
            raise ValueError("naive datetime: give it a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None or _stores_zone(dialect):
            return value
        return value.replace(tzinfo=UTC)


Timestamp = UTCDateTime()


class ServerNow(FunctionElement[datetime]):
    """The database's clock, as a column's server default (`dialects/*.current_time_sql`)."""

    type = Timestamp
    inherit_cache = True


@compiles(ServerNow)
def _server_now(element: ServerNow, compiler: SQLCompiler, **kw: Any) -> str:
    return _current_time_sql(compiler.dialect)


class Now(FunctionElement[datetime]):
    """The time a statement writes into a creation or modification time.

    The database's clock on a server: one for every replica. On SQLite the process is
    the database server, so the service's clock sets the times, in the one text format
    (with microseconds) every row shares, which keeps them comparable as strings: a
    parameter whose value is taken as each statement runs.
    """

    type = Timestamp
    inherit_cache = True


@compiles(Now)
def _now(element: Now, compiler: SQLCompiler, **kw: Any) -> str:
    if compiler.dialect.name == "sqlite":
        return compiler.process(bindparam(None, callable_=utc_now, type_=Timestamp), **kw)
    return _current_time_sql(compiler.dialect)


def utc_now() -> datetime:
    return datetime.now(UTC)


def inserted_at() -> dict[str, Any]:
    """Column arguments for a creation time (the server default covers rows other tools
    write)."""
    return {"default": Now(), "server_default": ServerNow()}


def updated_at() -> dict[str, Any]:
    """Column arguments for a modification time, set again by every UPDATE."""
    return {"default": Now(), "onupdate": Now(), "server_default": ServerNow()}
