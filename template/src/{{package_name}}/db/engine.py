"""`DatabaseManager`: the one engine and session factory of a process.

Created in the app's lifespan (never at import, so importing the app opens no
connection and tests can point it elsewhere), connected with bounded retries, and
disposed at shutdown.
"""

import asyncio
import logging
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine

from ..core.config import Settings
from ..core.errors import DatabaseUnavailable
from .dialect import engine_options
from .dialect import prepare
from .metrics import PoolCounters
from .metrics import log_slow_queries
from .metrics import watch_pool
from .reads import READ_METHODS
from .reads import is_read_session
from .reads import read_sessions

log = logging.getLogger(__name__)
T = TypeVar("T")


@asynccontextmanager
async def finished_session(
    sessionmaker: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session whose open transaction is committed on success and rolled back on error.

    A read session is only closed: it has nothing to commit (units of work refuse it).
    """
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            if session.in_transaction() and not is_read_session(session):
                await session.commit()


async def once_more_if_dropped(work: Callable[[], Awaitable[T]]) -> T:
    """Run `work`; if its connection turns out to have been dropped by the server (a
    restart, a failover, an idle cut-off), run it once more. Only for work that changed
    nothing: the pool has discarded the dead connection and every one opened before it.
    """
    try:
        return await work()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        log.warning("database connection lost (%s); running again", type(error.orig).__name__)
    return await work()


def build_engine(settings: Settings) -> AsyncEngine:
    engine = create_async_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=settings.db_pool_pre_ping,
        echo=settings.db_echo,
        **engine_options(settings),
    )
    event.listen(engine.sync_engine, "do_connect", _connect_or_unavailable)
    prepare(engine.sync_engine, settings)
    return engine


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
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None
        self._reads: async_sessionmaker[AsyncSession] | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._engine

    @property
    def sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._sessionmaker

    @property
    def reads(self) -> async_sessionmaker[AsyncSession]:
        """Sessions for requests that only read (`db/reads.py`)."""
        if self._reads is None:
            raise RuntimeError("DatabaseManager.connect() has not been awaited")
        return self._reads

    def sessionmaker_for(self, method: str) -> async_sessionmaker[AsyncSession]:
        """The sessions a request with this method gets; tests bind it to their transaction."""
        return self.reads if method in READ_METHODS else self.sessionmaker

    async def connect(self) -> None:
        """Build the engine and wait, with exponential backoff, until the database answers."""
        engine = build_engine(self.settings)
        watch_pool(engine.sync_engine, self.counters)
        if self.settings.db_slow_query_ms:
            log_slow_queries(engine.sync_engine, self.settings.db_slow_query_ms)
        # expire_on_commit=False: objects stay readable after commit without a lazy load
        # (which async sessions cannot do implicitly). autoflush=False: flushes happen where
        # the code says so, never in the middle of building a query.
        self._sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._reads = read_sessions(engine)
        self._engine = engine
        attempts = self.settings.db_connect_attempts
        for attempt in range(1, attempts + 1):
            try:
                async with engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                break
            except (DatabaseUnavailable, DBAPIError, OSError, TimeoutError) as error:
                if attempt == attempts:
                    log.error("database unreachable after %d attempts: %s", attempts, error)
                    raise
                delay = self.settings.db_connect_backoff * 2 ** (attempt - 1)
                log.warning(
                    "database not ready (%s); retrying in %.1fs",
                    type(error).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
        ceiling = self.settings.db_pool_size + self.settings.db_max_overflow
        log.info(
            "database %s connected; at most %d connections per worker (pool %d + overflow %d)",
            self.settings.database_url,
            ceiling,
            self.settings.db_pool_size,
            self.settings.db_max_overflow,
        )

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session of its own: for background tasks and streaming responses, which
        outlive the request's session (that one closes before the response is sent).

        Nothing runs their work again if its connection turns out dead, so without
        pre-ping the connection is tested here first, as pre-ping would.
        """
        async with finished_session(self.sessionmaker) as session:
            if not self.settings.db_pool_pre_ping:
                try:
                    await session.execute(text("SELECT 1"))
                except DBAPIError as error:
                    if not error.connection_invalidated:
                        raise
                    await session.rollback()  # the pool has discarded it: the next is new
            yield session

    async def disconnect(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
        self._engine = None
        self._sessionmaker = None
        self._reads = None

    def pool_status(self) -> dict[str, int]:
        pool: Any = self.engine.pool
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout(),
            "overflow": max(pool.overflow(), 0),
            **self.counters.as_dict(),
        }
