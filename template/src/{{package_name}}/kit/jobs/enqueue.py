"""`enqueue`: a background job as one more statement of a unit of work.

The job's row is written through the unit of work's own session, so it commits with
the write that caused it, or rolls back with it: a job exists if and only if that
write committed, and a unit of work that runs again enqueues again only in the attempt
that commits. A job with a `dedupe_key` already queued or running is skipped, and the
write stands (a conflict would abort the whole transaction).
"""

import asyncio
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING
from typing import Any
from typing import Self

from pydantic import BaseModel

from ..db.session import ReadSession
from ..db.session import WriteSession
from ..observability.logging import request_id_var
from .trace import trace_headers

if TYPE_CHECKING:
    from pgqueuer.ports.driver import NotifyCallback
    from pgqueuer.ports.driver import TaskManagerPort

# The header that carries the enqueuing request's id into the job's log lines.
REQUEST_ID = "request_id"
_OUTSIDE = (
    "a job enqueued outside a unit of work: enqueue in the @unit_of_work whose write "
    "the job follows, so that the two commit together"
)


class SessionDriver:
    """pgqueuer's `Driver` over a session: its statements run on the session's
    connection, in the session's transaction, seen by the kit's statement metrics and
    events like any other. A session never listens: the worker does, on a connection
    of its own."""

    def __init__(self, session: ReadSession) -> None:
        self.session = session
        self._shutdown = asyncio.Event()

    async def fetch(self, query: str, *args: object) -> list[dict[str, object]]:
        connection = await self.session.connection()
        # The asyncpg dialect takes `$1`-style parameters, which are pgqueuer's.
        result = await connection.exec_driver_sql(query, args)
        return [dict(row) for row in result.mappings()]

    async def execute(self, query: str, *args: object) -> str:
        connection = await self.session.connection()
        await connection.exec_driver_sql(query, args)
        return ""

    async def add_listener(self, channel: str, callback: "NotifyCallback") -> None:
        raise RuntimeError("a session does not LISTEN: the worker does, on its own connection")

    async def notify(self, channel: str, payload: str) -> None:
        await self.execute("SELECT pg_notify($1, $2)", channel, payload)

    @property
    def shutdown(self) -> asyncio.Event:
        return self._shutdown

    @property
    def tm(self) -> "TaskManagerPort":
        raise RuntimeError("a session runs no background tasks")

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None


def writing_session(session: WriteSession) -> WriteSession:
    """`session`, if jobs may be written through it now: a PostgreSQL `WriteSession`
    inside a unit of work. Refused otherwise, with the reason."""
    if not isinstance(session, WriteSession):
        raise TypeError(f"jobs are written through a WriteSession, not a {type(session).__name__}")
    if not session.info.get("unit_of_work_depth"):
        raise RuntimeError(_OUTSIDE)
    backend = session.get_bind().dialect.name
    if backend != "postgresql":
        raise RuntimeError(
            f"background jobs are a PostgreSQL queue, and this session's database is "
            f"{backend}: there is no queue to enqueue into"
        )
    return session


async def enqueue(
    session: WriteSession,
    job: str,
    payload: Mapping[str, Any] | BaseModel | None = None,
    *,
    dedupe_key: str | None = None,
    delay: timedelta | None = None,
    priority: int = 0,
) -> int | None:
    """Enqueue `job` with `payload` (JSON) in the unit of work running on `session`.

    The job's id, or None when a job with the same `dedupe_key` is already queued or
    running. The current request's id goes with it, into the job's log lines, and the
    current trace's context, into the job's spans (trace.py)."""
    writing_session(session)
    from pgqueuer.queries import Queries  # the `jobs` extra: only where jobs are written

    if isinstance(payload, BaseModel):
        body = payload.model_dump_json().encode()
    else:
        body = json.dumps(dict(payload or {}), separators=(",", ":")).encode()
    request_id = request_id_var.get()
    headers = {REQUEST_ID: request_id} if request_id != "-" else {}
    headers.update(trace_headers())
    queries = Queries(SessionDriver(session))
    [job_id] = await queries.enqueue(
        job, body, priority, delay, dedupe_key, headers or None, on_conflict="skip"
    )
    return None if job_id is None else int(job_id)
