"""Engine event listeners: pool counters and gauges, statement times, the slow-query log.

They hook the synchronous engine under the async one, which is where SQLAlchemy
emits pool and cursor events. The counters are plain integers read by
`DatabaseManager.pool_status()`; the gauges and histograms are the Prometheus ones
of `kit/observability/metrics.py`, their labelled series bound once here so an event pays only
the observation.
"""

import logging
import time
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import cast

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import AsyncAdaptedQueuePool
from sqlalchemy.pool import PoolProxiedConnection

from ..observability.metrics import POOL_CHECKED_OUT
from ..observability.metrics import POOL_OVERFLOW
from ..observability.metrics import POOL_SIZE
from ..observability.metrics import POOL_WAIT_SECONDS
from ..observability.metrics import POOL_WAITING
from ..observability.metrics import STATEMENT_SECONDS

log = logging.getLogger(__name__)


@dataclass
class PoolCounters:
    connects: int = 0
    checkouts: int = 0
    checkins: int = 0
    invalidations: int = 0
    checkout_timeouts: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class MeteredPool(AsyncAdaptedQueuePool):
    """The async engines' usual pool, also counting who waits for a connection and how
    long. SQLAlchemy has no event before a checkout, so the pool's public `connect()`
    is timed; the wait includes opening a new connection when the pool makes one."""

    # SQLAlchemy's own logger name, so its pool messages stay where its settings put them.
    _sqla_logger_namespace = "sqlalchemy.pool.impl.AsyncAdaptedQueuePool"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name("unnamed")

    def name(self, label: str) -> None:
        """Report under `label` (`watch_pool` names each engine's pool)."""
        self.label = label
        self._waiting = POOL_WAITING.labels(label)
        self._wait = POOL_WAIT_SECONDS.labels(label)

    def connect(self) -> PoolProxiedConnection:
        self._waiting.inc()
        started = time.perf_counter()
        try:
            return super().connect()
        finally:
            self._wait.observe(time.perf_counter() - started)
            self._waiting.dec()

    def recreate(self) -> "MeteredPool":
        """The pool `engine.dispose()` puts in this one's place, under the same label."""
        pool = cast(MeteredPool, super().recreate())
        pool.name(self.label)
        return pool


def watch_pool(engine: Engine, counters: PoolCounters, *, pool: str) -> None:
    """Count `engine`'s pool events into `counters` and its gauges under the label `pool`.

    Gauges go up and down rather than being set, so engines that share a label (the
    replicas) add up. Connections in use: checkout up, checkin down (both fire once
    per use, a connection invalidated in use included); overflow: those of them
    beyond the pool size.
    """
    if isinstance(engine.pool, MeteredPool):
        engine.pool.name(pool)
    size = int(getattr(engine.pool, "size", lambda: 0)())
    POOL_SIZE.labels(pool).inc(size)
    checked_out, overflow = POOL_CHECKED_OUT.labels(pool), POOL_OVERFLOW.labels(pool)
    in_use = 0

    def on_connect(*_: Any) -> None:
        counters.connects += 1

    def on_checkout(*_: Any) -> None:
        nonlocal in_use
        counters.checkouts += 1
        in_use += 1
        checked_out.inc()
        if in_use > size:
            overflow.inc()

    def on_checkin(*_: Any) -> None:
        nonlocal in_use
        counters.checkins += 1
        if in_use > size:
            overflow.dec()
        in_use -= 1
        checked_out.dec()

    def on_invalidate(*_: Any) -> None:
        counters.invalidations += 1

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "invalidate", on_invalidate)


def time_statements(engine: Engine, *, pool: str, slow_ms: int) -> None:
    """Time every statement into the histogram; log those slower than `slow_ms` (0:
    none) at WARNING, without their parameters (they may be personal data)."""
    threshold = slow_ms / 1000 if slow_ms else float("inf")
    seconds = STATEMENT_SECONDS.labels(pool)

    def before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault("query_start", []).append(time.perf_counter())

    def after(
        conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        elapsed = time.perf_counter() - conn.info["query_start"].pop()
        seconds.observe(elapsed)
        if elapsed >= threshold:
            log.warning("slow query (%.0f ms): %s", elapsed * 1000, " ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
