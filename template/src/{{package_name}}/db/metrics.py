"""Engine event listeners: pool counters and the slow-query log.

Both hook the synchronous engine under the async one, which is where SQLAlchemy
emits pool and cursor events. The counters are plain integers: cheap enough to keep
on every request, read by `DatabaseManager.pool_status()`.
"""

import logging
import time
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

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


def watch_pool(engine: Engine, counters: PoolCounters) -> None:
    def on_connect(*_: Any) -> None:
        counters.connects += 1

    def on_checkout(*_: Any) -> None:
        counters.checkouts += 1

    def on_checkin(*_: Any) -> None:
        counters.checkins += 1

    def on_invalidate(*_: Any) -> None:
        counters.invalidations += 1

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    event.listen(engine, "invalidate", on_invalidate)


def log_slow_queries(engine: Engine, threshold_ms: int) -> None:
    """Log statements slower than the threshold, without their parameters (they may be PII)."""
    threshold = threshold_ms / 1000

    def before(conn: Any, _cursor: Any, _stmt: str, _params: Any, _ctx: Any, _many: bool) -> None:
        conn.info.setdefault("query_start", []).append(time.perf_counter())

    def after(
        conn: Any, _cursor: Any, statement: str, _params: Any, _ctx: Any, _many: bool
    ) -> None:
        elapsed = time.perf_counter() - conn.info["query_start"].pop()
        if elapsed >= threshold:
            log.warning("slow query (%.0f ms): %s", elapsed * 1000, " ".join(statement.split()))

    event.listen(engine, "before_cursor_execute", before)
    event.listen(engine, "after_cursor_execute", after)
