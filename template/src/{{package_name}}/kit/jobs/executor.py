"""How the worker runs one job: its handler bounded by a timeout, its failure turned
into a retry with backoff until its retries are spent (then pgqueuer keeps it as
`failed`), its log lines carrying the id of the request that enqueued it.

When the worker stops and its grace period is over, a running handler is cancelled
and the job goes back to the queue at once, for another worker (`released`). That
counts as one of its runs but never fails it.
"""

import asyncio
import contextlib
import dataclasses
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from pgqueuer.errors import RetryRequested
from pgqueuer.executors import AbstractEntrypointExecutor
from pgqueuer.executors import EntrypointExecutorParameters
from pgqueuer.models import Context
from pgqueuer.models import Job

from ..observability.logging import request_id_var
from ..observability.metrics import JOBS_RUNS
from ..settings import KitSettings
from .enqueue import REQUEST_ID
from .registry import JobRun
from .registry import JobSpec
from .registry import decode_payload
from .trace import job_span

if TYPE_CHECKING:
    from ..db.engine import DatabaseManager

log = logging.getLogger(__name__)


class JobTimedOut(Exception):
    """A run took longer than its job's timeout, and was cancelled."""


class Released(RetryRequested):
    """A run cancelled by a stopping worker: its job goes back to the queue at once."""


async def _run_by_the_executor(job: Job) -> None:
    raise RuntimeError("the kit's executor runs the handler, not pgqueuer")  # pragma: no cover


def parameters() -> EntrypointExecutorParameters:
    """pgqueuer's description of an entrypoint: failed jobs are kept (`hold`)."""
    return EntrypointExecutorParameters(
        concurrency_limit=0, func=_run_by_the_executor, on_failure="hold"
    )


@dataclasses.dataclass
class KitExecutor(AbstractEntrypointExecutor):
    spec: JobSpec
    settings: KitSettings
    db: "DatabaseManager"
    # Set when the worker's grace period is over: running handlers give their jobs back.
    released: asyncio.Event

    @property
    def retries(self) -> int:
        return self.settings.jobs_retries if self.spec.retries is None else self.spec.retries

    @property
    def timeout(self) -> float:
        return (
            self.settings.jobs_timeout_seconds if self.spec.timeout is None else self.spec.timeout
        )

    def backoff(self, retry: int) -> timedelta:
        """The wait before retry number `retry` (1 for the first): doubling, capped."""
        first = (
            self.settings.jobs_backoff_seconds if self.spec.backoff is None else self.spec.backoff
        )
        return timedelta(
            seconds=min(first * 2 ** (retry - 1), self.settings.jobs_max_backoff_seconds)
        )

    async def execute(self, job: Job, context: Context) -> None:
        headers = job.headers or {}
        request_id = str(headers.get(REQUEST_ID) or f"job-{job.id}")
        token = request_id_var.set(request_id)
        try:
            run = JobRun(
                id=int(job.id),
                name=str(job.entrypoint),
                payload=decode_payload(job.payload),
                attempt=job.attempts + 1,
                request_id=request_id,
                db=self.db,
                settings=self.settings,
            )
            try:
                with job_span(run.name, run.id, run.attempt, request_id, headers):
                    await self._bounded(run)
            except Released:
                JOBS_RUNS.labels(run.name, "released").inc()
                raise
            except RetryRequested:
                JOBS_RUNS.labels(run.name, "retried").inc()
                raise
            except Exception as error:
                if job.attempts >= self.retries:
                    JOBS_RUNS.labels(run.name, "failed").inc()
                    log.error(
                        "job %s %d failed on run %d, its last: kept as failed",
                        run.name,
                        run.id,
                        run.attempt,
                    )
                    raise
                JOBS_RUNS.labels(run.name, "retried").inc()
                delay = self.backoff(run.attempt)
                log.warning(
                    "job %s %d failed on run %d (%s); running it again in %.1fs",
                    run.name,
                    run.id,
                    run.attempt,
                    type(error).__name__,
                    delay.total_seconds(),
                )
                raise RetryRequested(
                    delay=delay, reason=f"{type(error).__name__}: {error}"
                ) from error
            JOBS_RUNS.labels(run.name, "succeeded").inc()
        finally:
            request_id_var.reset(token)

    async def _bounded(self, run: JobRun) -> None:
        """The handler, cancelled after the timeout or once the worker releases its jobs."""
        handler = asyncio.ensure_future(self.spec.handler(run))
        release = asyncio.ensure_future(self.released.wait())
        try:
            done, _ = await asyncio.wait(
                {handler, release}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if handler in done:
                handler.result()
                return
        finally:
            release.cancel()
            if not handler.done():
                handler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await handler
        if release in done:
            log.warning("job %s %d released: the worker is stopping", run.name, run.id)
            raise Released(delay=timedelta(0), reason="released: the worker stopped")
        raise JobTimedOut(f"job {run.name} {run.id} took longer than {self.timeout:g}s")
