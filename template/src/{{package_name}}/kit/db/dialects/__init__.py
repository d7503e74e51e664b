"""One module per backend, chosen at run time by the dialect name of a URL or connection.

`postgresql.py`, `mysql.py` (MariaDB and MySQL, with `mysql_errors.py`) and `sqlite.py`
each hold everything particular to their database: connection set-up, how errors are
recognised, the migration lock, how an INSERT yields to a concurrent one, how times are
stored. Only the module of the backend in use is imported: its driver is the one
installed.
"""

import functools
import importlib
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any
from typing import Protocol
from typing import TypeVar
from typing import cast

from sqlalchemy.engine import URL
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

T = TypeVar("T")

# SQLAlchemy's dialect names, as `URL.get_backend_name()` and `Dialect.name` give them.
BACKENDS = ("postgresql", "mysql", "sqlite")


class Backend(Protocol):
    """What each backend module provides (`settings` is the service's settings)."""

    LOST_CONNECTION: tuple[type[Exception], ...]
    ONE_OFF_CONNECT_ARGS: dict[str, Any]
    TIMESTAMP_STORES_ZONE: bool

    def engine_options(self, settings: Any, *, read_only: bool = False) -> dict[str, Any]: ...

    def prepare(self, engine: Engine, settings: Any, *, read_only: bool = False) -> None: ...

    async def configure_server(self, connection: AsyncConnection, settings: Any) -> None: ...

    def pooler_limit(self, settings: Any) -> tuple[str, int | None] | None: ...

    async def max_connections(self, connection: AsyncConnection, settings: Any) -> int | None: ...

    def misconfigured(self, error: BaseException, url: URL) -> str | None: ...

    async def without_statement_timeout(self, connection: AsyncConnection) -> None: ...

    def violation(self, error: DBAPIError) -> str | None: ...

    def refused_value(self, error: DBAPIError) -> str | None: ...

    def violated_constraint(self, error: DBAPIError) -> str | None: ...

    def is_retryable(self, error: DBAPIError) -> bool: ...

    def migration_lock(
        self, connection: AsyncConnection, name: str, lock_timeout_ms: int
    ) -> AbstractAsyncContextManager[None]: ...

    def lock_timed_out(self, error: DBAPIError) -> bool: ...

    async def insert_or_none(
        self, session: AsyncSession, model: type[T], values: dict[str, Any], keys: list[str]
    ) -> T | None: ...

    def timestamp_type(self) -> TypeEngine[datetime]: ...

    def current_time_sql(self) -> str: ...


@functools.cache  # asked per value bound (`types.Timestamp`): a dict lookup after the first
def backend(name: str) -> Backend:
    """The module of the backend SQLAlchemy calls `name` (a dialect's or URL's name)."""
    if name not in BACKENDS:
        raise ValueError(f"no backend module for the database {name!r}")
    return cast(Backend, importlib.import_module(f"{__name__}.{name}"))


def backend_of_url(url: URL | str) -> Backend:
    """The backend module for a database URL (`postgresql+asyncpg://...` -> postgresql)."""
    return backend(make_url(url).get_backend_name())


# The root package of each driver's exception classes (SQLAlchemy's asyncpg adapter
# raises classes of its own module, `sqlalchemy.dialects.postgresql.asyncpg`).
_DRIVERS = {
    "asyncpg": "postgresql",
    "psycopg": "postgresql",
    "psycopg2": "postgresql",
    "asyncmy": "mysql",
    "aiomysql": "mysql",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
    "sqlite3": "sqlite",
    "aiosqlite": "sqlite",
}


def backend_of_error(error: DBAPIError) -> Backend | None:
    """The backend whose driver raised `error` (an error carries no dialect); None when
    no driver raised it."""
    for cls in type(error.orig).__mro__:
        parts = cls.__module__.split(".")
        if parts[:2] == ["sqlalchemy", "dialects"] and len(parts) > 2 and parts[2] in BACKENDS:
            return backend(parts[2])
        if parts[0] in _DRIVERS:
            return backend(_DRIVERS[parts[0]])
    return None
