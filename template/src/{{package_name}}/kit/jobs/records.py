"""What the queue keeps: failed jobs, to look at and run again, and its event log,
pruned to JOBS_LOG_RETENTION_DAYS. An admin route or a command calls these with a
session of the service."""

from dataclasses import dataclass
from datetime import datetime
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import text

from ..db.session import ReadSession
from ..db.session import WriteSession
from ..db.session import unit_of_work
from .enqueue import SessionDriver
from .enqueue import writing_session
from .registry import decode_payload

if TYPE_CHECKING:
    from ..db.engine import DatabaseManager

# Rows of the event log one pruning statement deletes: short transactions, few locks.
_PRUNE_BATCH = 5_000
_PRUNE = text(
    "DELETE FROM pgqueuer_log WHERE id IN (SELECT id FROM pgqueuer_log "
    "WHERE created < now() - CAST(:age AS interval) ORDER BY id LIMIT :batch)"
)


@dataclass(frozen=True)
class FailedJob:
    id: int
    name: str
    payload: dict[str, object]
    # Runs it had: the first and every retry.
    runs: int
    failed_at: datetime


async def list_failed(session: ReadSession, limit: int = 100) -> list[FailedJob]:
    """The jobs that failed their last retry, newest first."""
    from pgqueuer.queries import Queries

    failed = await Queries(SessionDriver(session)).list_failed_jobs(limit=limit)
    return [
        FailedJob(
            id=int(job.id),
            name=str(job.entrypoint),
            payload=decode_payload(job.payload),
            runs=job.attempts + 1,
            failed_at=job.updated,
        )
        for job in failed
    ]


async def retry_failed(session: WriteSession, ids: list[int]) -> None:
    """Queue these failed jobs again, with their retries renewed, in the unit of work
    on `session` (ids of jobs that are not failed are left alone)."""
    writing_session(session)
    from pgqueuer.queries import Queries
    from pgqueuer.types import JobId

    await Queries(SessionDriver(session)).requeue_jobs([JobId(each) for each in ids])


async def prune_log(db: "DatabaseManager", older_than: timedelta) -> int:
    """Delete the queue's event log rows older than `older_than`, a batch per unit of
    work (short transactions, few locks held at once); the number deleted."""
    deleted = 0
    while True:
        async with db.write_session() as session:
            count = await _prune_batch(session, older_than)
        deleted += count
        if count < _PRUNE_BATCH:
            return deleted


@unit_of_work
async def _prune_batch(session: WriteSession, older_than: timedelta) -> int:
    result = await session.execute(_PRUNE, {"age": older_than, "batch": _PRUNE_BATCH})
    return int(getattr(result, "rowcount", 0) or 0)
