"""Background jobs on PostgreSQL, committed with the write that causes them (the
`jobs` extra: pgqueuer).

- `enqueue(session, name, payload)`: in a `@unit_of_work`, a job that exists if and
  only if the unit of work commits (enqueue.py).
- `Jobs`, `JobRun`: the service's handlers, with retries, backoff, timeout, and
  periodic ones (registry.py); the worker command runs them (worker.py, runner.py).
- `once(session, key)`: an effect written once however often its job runs.
- `list_failed`, `retry_failed`: the jobs kept after their last retry, run again.

Idle until used: nothing here imports pgqueuer before a job is enqueued or a worker
starts.
"""

from .enqueue import enqueue
from .idempotency import once
from .records import FailedJob
from .records import list_failed
from .records import retry_failed
from .registry import JobRun
from .registry import Jobs

__all__ = ["FailedJob", "JobRun", "Jobs", "enqueue", "list_failed", "once", "retry_failed"]
