"""The pools' figures, statement times and the slow-query log.

The pools' state (size, connections in use, idle, overflow, callers waiting) is read from
the pools when /metrics is scraped (`refresh_at_scrape`): a checkout and a checkin pay
nothing for it. What has to be counted as it happens is: connections opened and
invalidated (plain integers in `PoolCounters`, read by `DatabaseManager.pool_status()`),
checkouts and the time each waited (`MeteredPool`), and statement times (the dialect's
execution of each statement, timed by `time_statements`).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import cast

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.pool import PoolProxiedConnection

from ..observability.metrics import POOL_CHECKED_OUT
from ..observability.metrics import POOL_IDLE
from ..observability.metrics import POOL_OVERFLOW
from ..observability.metrics import POOL_SIZE
from ..observability.metrics import POOL_WAIT_SECONDS
from ..observability.metrics import POOL_WAITING
from ..observability.metrics import STATEMENT_SECONDS
from ..observability.metrics import refresh_at_scrape

log = logging.getLogger(__name__)


@dataclass
class PoolCounters:
    connects: int = 0
    checkouts: int = 0
    invalidations: int = 0
    checkout_timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class MeteredPool(AsyncAdaptedQueuePool):
    """The async engines' usual pool, also counting checkouts and who waits for a
    connection, and timing the wait. SQLAlchemy has no event before a checkout, so the
    pool's public `connect()` is timed; the wait includes opening a new connection when
    the pool makes one."""

    # SQLAlchemy's own logger name, so its pool messages stay where its settings put them.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = 0  # callers inside `connect()` right now
        self.name("unnamed", PoolCounters())

    def name(self, label: str, counters: PoolCounters) -> None:
        """Report under `label`, counting into `counters` (`watch_pool` names each pool)."""
        self.label, self.counters = label, counters
        self._wait = POOL_WAIT_SECONDS.labels(label)

    def connect(self) -> PoolProxiedConnection:
        self.waiting += 1
        started = time.perf_counter()
        try:
            connection = super().connect()
        finally:
            self._wait.observe(time.perf_counter() - started)
            self.waiting -= 1
        self.counters.checkouts += 1
        return connection

    def recreate(self) -> "MeteredPool":
        """The pool `engine.dispose()` puts in this one's place, under the same label."""
        pool = cast(MeteredPool, super().recreate())
        pool.name(self.label, self.counters)
        return pool


def watch_pool(engine: Engine, counters: PoolCounters, *, pool: str) -> None:
    """Name `engine`'s pool `pool` and count its checkouts, new connections and
    invalidations into `counters`; its state is reported once `report_pool` is called."""
    if isinstance(engine.pool, MeteredPool):
        engine.pool.name(pool, counters)

    def on_connect(*_: Any) -> None:
        counters.connects += 1

    def on_invalidate(*_: Any) -> None:
        counters.invalidations += 1

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "invalidate", on_invalidate)


# The engines whose pools a scrape reports: a database adds its engines once connected
# and removes them as it disconnects.
_REPORTED: set[Engine] = set()
# Every label reported so far: one whose pools are all gone is reported as 0.
_LABELS: set[str] = set()


def report_pool(engine: Engine) -> None:
    _REPORTED.add(engine)


def stop_reporting(engine: Engine) -> None:
    _REPORTED.discard(engine)


def _read_pools() -> None:
    """Set the pool gauges from the pools as they are now, adding up the pools that share
    a label (the replicas). Runs at each scrape, in the app's thread or, with
    METRICS_PORT, in the metrics server's: it only reads the pools' counts."""
    figures = {label: [0, 0, 0, 0, 0] for label in _LABELS}
    for engine in _REPORTED.copy():  # a copy: another thread may disconnect meanwhile
        pool = engine.pool
        if not isinstance(pool, MeteredPool):
            continue
        state = (
            pool.size(),
            pool.checkedout(),
            pool.checkedin(),
            max(pool.overflow(), 0),  # negative while fewer than `size` are open
            pool.waiting,
        )
        summed = figures.setdefault(pool.label, [0, 0, 0, 0, 0])
        summed[:] = [a + b for a, b in zip(summed, state, strict=True)]
    for label, (size, checked_out, idle, overflow, waiting) in figures.items():
        POOL_SIZE.labels(label).set(size)
        POOL_CHECKED_OUT.labels(label).set(checked_out)
        POOL_IDLE.labels(label).set(idle)
        POOL_OVERFLOW.labels(label).set(overflow)
        POOL_WAITING.labels(label).set(waiting)
    _LABELS.update(figures)


refresh_at_scrape(_read_pools)


def time_statements(engine: Engine, *, pool: str, slow_ms: int) -> None:
    """Time every statement into the histogram; log those slower than `slow_ms` (0:
    none) at WARNING, without their parameters (they may be personal data).

    What is timed is the dialect running the statement on its cursor: the listeners of
    the dialect's `do_execute` events run it themselves. Listeners on the connection's
    cursor events would time the same stretch, but a connection event listener has
    SQLAlchemy dispatch its connection events at every begin, execute and rollback of
    every connection, which cost a read by id more than the timing itself.
    """
    threshold = slow_ms / 1000 if slow_ms else float("inf")
    seconds = STATEMENT_SECONDS.labels(pool)
    # The dialect's own statements as it sets up the engine's first connection (its
    # version, its settings) are not the service's: timing starts once that is done.
    timing = False

    def start_timing(*_: Any) -> None:
        nonlocal timing
        timing = True

    def timed(run: Callable[..., None]) -> Callable[..., bool]:
        def listener(cursor: Any, statement: str, *rest: Any) -> bool:
            if not timing:
                return False  # SQLAlchemy runs it
            started = time.perf_counter()
            run(cursor, statement, *rest)
            elapsed = time.perf_counter() - started
            seconds.observe(elapsed)
            if elapsed >= threshold:
                log.warning("slow query (%.0f ms): %s", elapsed * 1000, " ".join(statement.split()))
            return True  # it ran: SQLAlchemy runs it no more

        return listener

    event.listen(engine, "connect", start_timing, once=True)  # after the first's set-up
    dialect = engine.dialect
    event.listen(engine, "do_execute", timed(dialect.do_execute))
    event.listen(engine, "do_executemany", timed(dialect.do_executemany))
    event.listen(engine, "do_execute_no_params", timed(dialect.do_execute_no_params))
