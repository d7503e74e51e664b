"""Read replicas: `ReadSession`s served by streaming replicas, with read-your-writes.

`open_database` gives a `ReplicatedDatabase` only when DB_REPLICA_URLS names replicas
(PostgreSQL only: the settings refuse them on another backend); without them the service
runs `DatabaseManager` alone, and nothing here runs.

- A read without a consistency token goes, round robin, to a replica in rotation: one
  that answers, streams from the primary and lags it by less than DB_REPLICA_MAX_LAG
  seconds. A replica cut off from the primary has replayed all it received, yet falls
  further behind every moment: it stays only while its last replayed transaction is
  younger than DB_REPLICA_MAX_LAG.
- Right after a write session's COMMIT the primary's WAL position is taken on the
  connection that committed (`kit/replicas/positions.py`); the response carries it as
  its consistency token (`kit/replicas/consistency.py`).
- A read presenting a token goes to a replica that has replayed past it, else to the
  primary (through `DatabaseManager`'s read-only pool): the client sees its own write.
- Each replica's replay position is cached for DB_REPLICA_POSITION_MS. A token read asks
  a replica again at most that often (one check shared by every request waiting on it);
  a read without a token never waits: a stale position is refreshed in the background.
- A replica that fails a check or a statement leaves the rotation and is tried again
  after DB_REPLICA_RETRY_SECONDS; the read statement that failed runs again on the primary.
  So does one the replica cancelled for a conflict with recovery (the replay of a change
  on the primary needed what the read held), without taking the replica out.
"""

import asyncio
import itertools
import logging
import time
from dataclasses import dataclass
from dataclasses import field
from typing import Any

from sqlalchemy import Result
from sqlalchemy import event
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import ORMExecuteState

from ..db.dialect import is_retryable
from ..db.engine import DatabaseManager
from ..db.engine import build_engine
from ..db.metrics import report_pool
from ..db.metrics import stop_reporting
from ..db.metrics import time_statements
from ..db.metrics import watch_pool
from ..db.session import ReadSession
from ..db.session import WriteSession
from ..errors import DatabaseUnavailable
from ..settings import Settings
from .positions import TAKES_POSITION
from .positions import committed_position
from .positions import lsn
from .positions import take_position

log = logging.getLogger(__name__)

# session.info keys: the replica serving a read session, the primary's engine it falls
# back to.
_REPLICA = "replica"
_PRIMARY = "primary"
# Streaming: the WAL receiver runs and, to a role that may see it (pg_read_all_stats),
# reports it streams. Lag is 0 while streaming with everything received replayed (an
# idle primary sends nothing new); otherwise the age of the last replayed transaction,
# which bounds what a replica cut off from the primary misses.
_POSITION = text(
    "SELECT pg_last_wal_replay_lsn()::text, streaming, CASE "
    "WHEN streaming AND pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
    "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END "
    "FROM (SELECT EXISTS (SELECT FROM pg_stat_wal_receiver "
    "WHERE coalesce(status, 'streaming') = 'streaming') AS streaming) AS receiver"
)


@dataclass(eq=False)
class Replica:
    """One replica, as this process last saw it."""

    name: str
    engine: AsyncEngine
    sessions: async_sessionmaker[ReadSession] = field(init=False)
    replayed: int = -1
    checked: float = float("-inf")
    out: str | None = "not checked yet"
    check: asyncio.Task[None] | None = None

    def take_out(self, why: str) -> None:
        if self.out is None:
            log.warning("replica %s out of rotation: %s", self.name, why)
        self.out, self.checked = why, time.monotonic()


def open_database(settings: Settings) -> DatabaseManager:
    """The process's database: reads on the replicas if DB_REPLICA_URLS names any."""
    if settings.db_replica_urls:
        return ReplicatedDatabase(settings)
    return DatabaseManager(settings)


class ReplicatedDatabase(DatabaseManager):
    """`DatabaseManager` whose read sessions go to replicas (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.replicas: list[Replica] = []
        self._turn = itertools.count()

    async def connect(self) -> None:
        await super().connect()
        _listen()
        s = self.settings
        self.session_info[TAKES_POSITION] = s.health_timeout
        for url in s.db_replica_urls:
            engine = build_engine(
                s.model_copy(update={"database_url": url}),
                read_only=True,
                pool_size=s.db_replica_pool_size,
            )
            watch_pool(engine.sync_engine, self.counters, pool="replica")
            report_pool(engine.sync_engine)
            time_statements(engine.sync_engine, pool="replica", slow_ms=s.db_slow_query_ms)
            replica = Replica(f"{url.host}:{url.port or 5432}", engine)
            replica.sessions = async_sessionmaker(
                engine,
                class_=ReadSession,
                expire_on_commit=False,
                autoflush=False,
                info={_REPLICA: replica, _PRIMARY: self.read_engine.sync_engine},
            )
            self.replicas.append(replica)
        await self.check_replicas()

    async def disconnect(self) -> None:
        for replica in self.replicas:
            if replica.check is not None:
                replica.check.cancel()
            stop_reporting(replica.engine.sync_engine)
            await replica.engine.dispose()
        self.replicas = []
        await super().disconnect()

    def read_session(self) -> ReadSession:
        """A read session on a replica in rotation, else on the primary."""
        rotation = self._rotation()
        if not rotation:
            return super().read_session()
        return rotation[next(self._turn) % len(rotation)].sessions()

    async def read_session_after(self, token: int) -> ReadSession:
        """A read session that sees every write up to WAL position `token`."""
        behind = [r for r in self._rotation() if r.replayed < token]
        now = time.monotonic()
        due = [r for r in behind if now - r.checked >= self.settings.db_replica_position_ms / 1e3]
        await asyncio.gather(*(asyncio.shield(self._check(r)) for r in due))
        current = [r for r in self._rotation() if r.replayed >= token]
        if not current:
            return super().read_session()
        return current[next(self._turn) % len(current)].sessions()

    def consistency_token(self, session: WriteSession) -> str | None:
        """The WAL position `session` took after its last commit, if it could."""
        return committed_position(session)

    async def check_replicas(self) -> str:
        """Ask every replica now; say which are out of rotation (for readiness)."""
        await asyncio.gather(*(asyncio.shield(self._check(r)) for r in self.replicas))
        out = [r for r in self.replicas if r.out is not None]
        if not out:
            return f"{len(self.replicas)} in rotation"
        names = ", ".join(f"{r.name} ({r.out})" for r in out)
        return f"{len(out)} of {len(self.replicas)} out: {names}"

    def pool_status(self) -> dict[str, int]:
        """The primary's pools as `DatabaseManager` counts them, and the replicas' apart."""
        pools: list[Any] = [replica.engine.pool for replica in self.replicas]
        return {
            **super().pool_status(),
            "replica_size": sum(pool.size() for pool in pools),
            "replica_checked_out": sum(pool.checkedout() for pool in pools),
        }

    def _rotation(self) -> list[Replica]:
        """The replicas serving reads; a stale position is refreshed in the background."""
        now = time.monotonic()
        s = self.settings
        for replica in self.replicas:
            period = s.db_replica_retry_seconds if replica.out else s.db_replica_position_ms / 1e3
            if now - replica.checked >= period:
                self._check(replica)
        return [r for r in self.replicas if r.out is None]

    def _check(self, replica: Replica) -> asyncio.Task[None]:
        """The replica's check in flight, or a new one: concurrent callers share it."""
        if replica.check is None:
            replica.check = asyncio.create_task(self._ask(replica))
        return replica.check

    async def _ask(self, replica: Replica) -> None:
        try:
            async with asyncio.timeout(self.settings.health_timeout):
                async with replica.engine.connect() as conn:
                    position, streaming, lag = (await conn.execute(_POSITION)).one()
        except Exception as error:  # any failure to answer in time: out, for now
            replica.take_out(f"unreachable: {type(error).__name__}")
        else:
            if not streaming and (lag is None or lag > self.settings.db_replica_max_lag):
                since = "" if lag is None else f", last replayed {float(lag):.1f}s ago"
                replica.take_out(f"cut off from the primary{since}")
            elif position is None or lag is None:
                replica.take_out("not replaying")
            elif lag > self.settings.db_replica_max_lag:
                replica.take_out(f"{float(lag):.1f}s behind")
            else:
                if replica.out is not None:
                    log.info("replica %s back in rotation", replica.name)
                replica.replayed, replica.out = lsn(position), None
                replica.checked = time.monotonic()
        finally:
            replica.check = None


def _listen() -> None:
    """Install the listeners below once; a process without replicas never runs them."""
    if not event.contains(ReadSession.sync_session_class, "do_orm_execute", _primary_if_lost):
        event.listen(
            ReadSession.sync_session_class, "do_orm_execute", _primary_if_lost, retval=True
        )
        event.listen(WriteSession.sync_session_class, "after_commit", take_position)


def _primary_if_lost(state: ORMExecuteState) -> Result[Any]:
    """A read that cannot reach its replica, or that its replica cancelled, runs again on
    the primary.

    A read changed nothing, so running it elsewhere is safe; the session is rebound to
    the primary's read-only engine for the rest of the request (a replica that lost one
    connection has likely lost them all; one that cancelled a read may cancel the next).
    A read-only statement on a standby loses a race (SQLSTATE 40001, 40P01) only to the
    replay of the primary's changes, a conflict with recovery: the replica stays in.
    """
    replica: Replica | None = state.session.info.get(_REPLICA)
    if replica is None:
        return state.invoke_statement()
    try:
        return state.invoke_statement()
    except (DatabaseUnavailable, PoolTimeout, DBAPIError) as error:
        if isinstance(error, DBAPIError) and not error.connection_invalidated:
            if not is_retryable(error):
                raise
            log.warning(
                "read cancelled by replica %s (%s); reading on the primary",
                replica.name,
                error.orig,
            )
        else:
            replica.take_out(f"unreachable: {type(error).__name__}")
    session = state.session
    session.rollback()
    session.bind = session.info.pop(_PRIMARY)
    del session.info[_REPLICA]
    return state.invoke_statement()
