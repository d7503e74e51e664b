"""`Jobs`: the service's job handlers by name, with their retries, backoff and timeout,
and the periodic ones with their schedules. The worker runs what is registered here.

    jobs = Jobs()

    @jobs.job("send_receipt", retries=3, timeout=10)
    async def send_receipt(run: JobRun) -> None:
        ...

A handler may run more than once for one job (a retry, a worker killed mid-job), so
its effect is written once with `once(session, run.effect_key)` (idempotency.py).
"""

import json
from collections.abc import Awaitable
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from ..db.engine import DatabaseManager
    from ..settings import KitSettings


@dataclass(frozen=True)
class JobRun:
    """One run of a job, as its handler sees it."""

    id: int
    name: str
    payload: dict[str, Any]
    # 1 for the first run, 2 for the first retry...
    attempt: int
    # The id of the request that enqueued it (or "-"), also on the run's log lines.
    request_id: str
    # The service's database: `async with run.db.write_session() as session:`.
    db: "DatabaseManager"
    # The worker's settings: the service's `Settings`, as the environment gave them.
    settings: "KitSettings"

    @property
    def effect_key(self) -> str:
        """The same for every run of this job: the key of its effect for `once`."""
        return f"{self.name}:{self.id}"


Handler = Callable[[JobRun], Awaitable[None]]


@dataclass(frozen=True)
class JobSpec:
    """A registered handler and how its runs are bounded; None: the JOBS_* setting."""

    name: str
    handler: Handler
    retries: int | None = None
    timeout: float | None = None
    backoff: float | None = None
    # A cron expression as croniter reads it (five fields, or six with the seconds
    # last): the job is enqueued once per tick across all workers.
    schedule: str | None = None


class Jobs:
    """The job handlers of a service, by name."""

    def __init__(self) -> None:
        self.specs: dict[str, JobSpec] = {}

    def job(
        self,
        name: str,
        *,
        retries: int | None = None,
        timeout: float | None = None,
        backoff: float | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler for jobs called `name`."""
        return self._register(name, retries, timeout, backoff, None)

    def periodic(
        self,
        name: str,
        schedule: str,
        *,
        retries: int | None = None,
        timeout: float | None = None,
    ) -> Callable[[Handler], Handler]:
        """Register the decorated handler, and enqueue a job for it on `schedule` (cron):
        once per tick across every worker, and run like any other job (retries, timeout,
        kept when it fails). Its payload names the tick: `{"tick": "<ISO time>"}`."""
        return self._register(name, retries, timeout, None, schedule)

    def include(self, other: "Jobs") -> None:
        """Register `other`'s handlers here too: a domain's jobs, kept beside its code."""
        for name, spec in other.specs.items():
            if name in self.specs:
                raise ValueError(f"a job called {name!r} is registered twice")
            self.specs[name] = spec

    def _register(
        self,
        name: str,
        retries: int | None,
        timeout: float | None,
        backoff: float | None,
        schedule: str | None,
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            if name in self.specs:
                raise ValueError(f"a job called {name!r} is registered twice")
            self.specs[name] = JobSpec(name, handler, retries, timeout, backoff, schedule)
            return handler

        return register


def decode_payload(payload: bytes | None) -> dict[str, Any]:
    """A job's payload as `enqueue` wrote it: a JSON object."""
    if not payload:
        return {}
    decoded = json.loads(payload)
    return decoded if isinstance(decoded, dict) else {"value": decoded}
