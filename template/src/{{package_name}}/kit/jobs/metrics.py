"""The queue's figures on `/metrics`: its depth by job and status, and how long its
oldest ready job has waited, read from the queue's table at each scrape (one grouped
query on the probe connection, outside the request pools) by the service and the
worker alike. The worker also counts its runs by outcome as they end (executor.py).
"""

from typing import TYPE_CHECKING

from sqlalchemy import text

from ..observability.metrics import JOBS_OLDEST_READY
from ..observability.metrics import JOBS_QUEUE_DEPTH
from ..observability.metrics import read_at_scrape

if TYPE_CHECKING:
    from ..db.engine import DatabaseManager

# Jobs by name and status (queued, picked, failed: pgqueuer deletes a job that
# succeeded), and the age of the oldest queued job whose time has come (a job waiting
# for its retry's backoff is not late).
_QUEUE = text(
    "SELECT entrypoint, status::text AS status, count(*) AS jobs, "
    "EXTRACT(EPOCH FROM now() - min(created) "
    "FILTER (WHERE status = 'queued' AND execute_after <= now())) AS oldest "
    "FROM pgqueuer GROUP BY entrypoint, status"
)

# The databases whose queue a scrape reads (one in practice: the app's, or the worker's).
_REPORTED: set["DatabaseManager"] = set()
# Every (job, status) reported so far: one gone from the queue is reported as 0.
_SEEN: set[tuple[str, str]] = set()


def report_queue(db: "DatabaseManager") -> None:
    _REPORTED.add(db)


def stop_reporting_queue(db: "DatabaseManager") -> None:
    _REPORTED.discard(db)


async def _read_queue() -> None:
    depth = dict.fromkeys(_SEEN, 0)
    oldest: dict[str, float] = {job: 0.0 for job, _ in _SEEN}
    for db in _REPORTED.copy():
        async with db.probe_engine.connect() as conn:
            rows = (await conn.execute(_QUEUE)).all()
        for job, status, jobs, age in rows:
            depth[(job, status)] = depth.get((job, status), 0) + int(jobs)
            oldest[job] = max(oldest.get(job, 0.0), float(age or 0.0))
    for (job, status), jobs in depth.items():
        JOBS_QUEUE_DEPTH.labels(job, status).set(jobs)
    for job, age in oldest.items():
        JOBS_OLDEST_READY.labels(job).set(age)
    _SEEN.update(depth)


read_at_scrape(_read_queue)
