"""`DatabaseManager`: the engines and session factories of a process.

Two pools: read-only connections for `ReadSession`s and read-write ones for
`WriteSession`s (see `session.py`), each sized by its own setting. Created in the
app's lifespan (never at import, so importing the app opens no connection and tests
can point it elsewhere), connected with bounded retries, and disposed at shutdown.
"""

import asyncio
import logging
from typing import Any

from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.engine import URL
from sqlalchemy.engine import Dialect
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DataError
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ..errors import DatabaseMisconfigured
from ..errors import DatabaseUnavailable
from ..settings import Settings
from .budget import check_budget
from .dialect import configure_server
from .dialect import engine_options
from .dialect import misconfigured
from .dialect import prepare
from .metrics import MeteredPool
from .metrics import PoolCounters
from .metrics import report_pool
from .metrics import stop_reporting
from .metrics import time_statements
from .metrics import watch_pool
from .roles import refuse_privileged_role
from .session import RETRY_ATTEMPTS
from .session import ReadSession
from .session import WriteSession

log = logging.getLogger(__name__)


def build_engine(
    settings: Settings, *, read_only: bool = False, pool_size: int | None = None
) -> AsyncEngine:
    """An engine as the service runs it; `read_only` gives `ReadSession`s' connections."""
    if pool_size is None:
        pool_size = settings.db_pool_size if read_only else settings.db_write_pool_size
    engine = create_async_engine(
        settings.database_url,
        pool_size=pool_size,
        max_overflow=settings.db_max_overflow if pool_size > 1 else 0,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=settings.db_pool_pre_ping,
        echo=settings.db_echo,
        hide_parameters=True,
        poolclass=MeteredPool,
        **engine_options(settings, read_only=read_only),
    )
    event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    event.listen(engine.sync_engine, "handle_error", _driver_refused_a_value)
    prepare(engine.sync_engine, settings, read_only=read_only)
    return engine


def _driver_refused_a_value(context: ExceptionContext) -> None:
    """A parameter the driver cannot encode (text with an unpaired surrogate, an integer
    beyond 64 bits on SQLite) fails inside the statement as a plain Python error: raise
    it as the `DataError` it is, so it is answered as the client's input (a 422), not
    as a fault of the service."""
    original = context.original_exception
    if context.sqlalchemy_exception is None and isinstance(
        original, UnicodeEncodeError | OverflowError
    ):
        raise DataError(context.statement, context.parameters, original, True) from original


def cannot_connect(error: BaseException, url: URL) -> str:
    """One line on why the database cannot be reached, and what to do about it."""
    cause = _cause(error)
    reason = misconfigured(cause, url)
    if reason is not None:
        return reason
    return (
        f"cannot reach the database at {url.host}:{url.port} ({type(cause).__name__}): "
        "is it running, and does DATABASE_URL point at it?"
    )


def _cause(error: BaseException) -> BaseException:
    """The driver's own error under the wrappers: ours, then SQLAlchemy's."""
    if isinstance(error, DatabaseUnavailable) and error.__cause__ is not None:
        error = error.__cause__
    return getattr(error, "orig", None) or error


def _connect_or_unavailable(
    dialect: Dialect, _record: Any, cargs: tuple[Any, ...], cparams: dict[str, Any]
) -> Any:
    """Any failure to open a connection means the database is unavailable right now.

    Drivers report it in many ways (refused, timed out, "not accepting connections",
    too many clients); naming it once here lets every caller answer 503 and retry.
    """
    try:
        return dialect.connect(*cargs, **cparams)
    except Exception as error:
        raise DatabaseUnavailable(f"cannot connect: {type(error).__name__}") from error


class DatabaseManager:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = PoolCounters()
        # What every session this manager makes finds in `session.info`, read as each is
        # made: an entry added after connect() (a cache, in the lifespan) reaches them.
        self.session_info: dict[str, Any] = {}
        self._engine: AsyncEngine | None = None
        self._read_engine: AsyncEngine | None = None
        self._probe_engine: AsyncEngine | None = None
        self._writes: async_sessionmaker[WriteSession] | None = None
        self._reads: async_sessionmaker[ReadSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        """The read-write engine: migrations, health checks and `WriteSession`s use it."""
        if self._engine is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._engine

    @property
    def read_engine(self) -> AsyncEngine:
        if self._read_engine is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._read_engine

    @property
    def probe_engine(self) -> AsyncEngine:
        """One connection of its own for the readiness probe, outside the request pools."""
        if self._probe_engine is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._probe_engine

    def read_session(self) -> ReadSession:
        """A new `ReadSession`; `async with` it, and it is closed at the end of the block."""
        if self._reads is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._reads()

    def write_session(self) -> WriteSession:
        """A new `WriteSession`; `async with` it. Writes commit in a `@unit_of_work`."""
        if self._writes is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._writes()

    async def connect(self) -> None:
        """Build the engines and wait, with exponential backoff, until the database answers."""
        self.session_info[RETRY_ATTEMPTS] = self.settings.db_retry_attempts
        engine = build_engine(self.settings)
        read_engine = build_engine(self.settings, read_only=True)
        self._probe_engine = build_engine(self.settings, pool_size=1)
        slow_ms = self.settings.db_slow_query_ms
        for name, each in (("write", engine), ("read", read_engine), ("probe", self._probe_engine)):
            watch_pool(each.sync_engine, self.counters, pool=name)
            time_statements(each.sync_engine, pool=name, slow_ms=slow_ms)
        # expire_on_commit=False: objects stay readable after commit without a lazy load
        # (which async sessions cannot do implicitly). autoflush=False: flushes happen where
        # the code says so, never in the middle of building a query.
        self._writes = async_sessionmaker(
            engine,
            class_=WriteSession,
            expire_on_commit=False,
            autoflush=False,
            info=self.session_info,
        )
        self._reads = async_sessionmaker(
            read_engine,
            class_=ReadSession,
            expire_on_commit=False,
            autoflush=False,
            info=self.session_info,
        )
        self._engine, self._read_engine = engine, read_engine
        attempts = self.settings.db_connect_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._first_contact()
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                    await refuse_privileged_role(conn, self.settings)
                break
            except (DatabaseUnavailable, DBAPIError, OSError, TimeoutError) as error:
                url = self.settings.direct_url
                reason = misconfigured(_cause(error), url)
                if reason is not None:
                    raise DatabaseMisconfigured(reason) from None
                if attempt == attempts:
                    reason = f"{cannot_connect(error, url)} ({attempts} attempts)"
                    raise DatabaseMisconfigured(reason) from None
                delay = self.settings.db_connect_backoff * 2 ** (attempt - 1)
                log.warning(
                    "database not ready (%s); retrying in %.1fs",
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
        for each in (engine, read_engine, self._probe_engine):
            report_pool(each.sync_engine)  # in the pool gauges from now on

    async def _first_contact(self) -> None:
        """On the server itself (past any pooler) and before any pooled connection opens:
        settle what the server must know, and check the connection budget."""
        options = engine_options(self.settings)
        direct = create_async_engine(self.settings.direct_url, poolclass=NullPool, **options)
        event.listen(direct.sync_engine, "do_connect", _connect_or_unavailable)
        try:
            async with direct.connect() as conn:
                await configure_server(conn, self.settings)
                await conn.commit()
                await check_budget(conn, self.settings)
        finally:
            await direct.dispose()

    async def disconnect(self) -> None:
        for engine in (self._engine, self._read_engine, self._probe_engine):
            if engine is not None:
                stop_reporting(engine.sync_engine)
                await engine.dispose()
        self._engine = self._read_engine = self._probe_engine = None
        self._writes = self._reads = None

    def pool_status(self) -> dict[str, int]:
        """Both pools added up, and the counters since start-up."""
        pools: list[Any] = [self.engine.pool, self.read_engine.pool]
        return {
            "size": sum(pool.size() for pool in pools),
            "checked_out": sum(pool.checkedout() for pool in pools),
            "overflow": sum(max(pool.overflow(), 0) for pool in pools),
            **self.counters.as_dict(),
        }
