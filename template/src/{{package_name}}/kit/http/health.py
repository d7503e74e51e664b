"""Liveness (no I/O) and readiness (the database answers and its schema is current).

With replicas (DB_REPLICA_URLS), readiness also says whether any is out of rotation
("replicas": "ok" or "degraded"), and stays ready: reads they would serve go to the
primary. With a cache (REDIS_URL), it says whether the cache answers ("cache": "ok" or
"degraded"), and stays ready either way: without Redis the database serves every read.
Neither key is there when its capability is not configured.

Readiness asks the database on a connection of its own (`DatabaseManager.probe_engine`),
never one of the request pools: a pod whose pools are saturated is slow, not broken,
and reporting it unready would take it out of the Service just when every pod is
busiest, turning load into an outage. Saturation answers 503 with Retry-After from the
pool timeout instead.

One check runs at a time and its answer serves every probe for `HEALTH_CACHE_SECONDS`:
a flood of probes (a load balancer, a monitoring loop, a client) costs the database one
check per period and never queues the kubelet's own probe behind it. Every check of a
run shares one deadline, `HEALTH_TIMEOUT`. The body names each component with a word
(ok, degraded, unavailable; the schema's state); hosts and errors go to the log.
"""

import asyncio
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import TypeVar

from fastapi import APIRouter
from fastapi import Request
from fastapi import Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ..db.engine import DatabaseManager
from ..migrations.startup import Schema
from ..migrations.startup import alembic_config
from ..replicas.replicas import ReplicatedDatabase

log = logging.getLogger(__name__)
T = TypeVar("T")
router = APIRouter(prefix="/health", tags=["health"])
# A newer release migrated first ("ahead") is the normal state of a rolling deploy.
READY_SCHEMAS = frozenset({"ok", "ahead"})


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


async def _check(db: DatabaseManager, schema: Schema | None) -> dict[str, str]:
    for attempt in (1, 2):
        try:
            async with db.probe_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                state = await conn.run_sync(schema.state) if schema else "ok"
            break
        except DBAPIError as error:
            # A pooled connection the server dropped says nothing of the server now.
            if not error.connection_invalidated or attempt == 2:
                raise
    return {"database": "ok", "schema": state}


def _schema(request: Request) -> Schema | None:
    """This code's migrations, read once per app from its Alembic configuration."""
    state = request.app.state
    if not state.settings.alembic_config.exists():  # no Alembic: the schema is not checked
        return None
    schema: Schema | None = getattr(state, "schema", None)
    if schema is None:
        schema = state.schema = Schema.of(alembic_config(state.settings.alembic_config))
    return schema


@router.get("/live", response_model=Health, summary="The process is up (no I/O)")
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    summary="The database answers, and its schema is this code's or a newer release's",
    responses={503: {"model": Health, "description": "Not ready; retry later"}},
)
async def ready(request: Request, response: Response) -> Health:
    state = request.app.state
    shared: SharedAnswer | None = getattr(state, "readiness", None)
    if shared is None:
        shared = state.readiness = SharedAnswer(state.settings.health_cache_seconds)
    ready, checks = await shared.get(lambda: _readiness(request))
    if ready:
        return Health(status="ok", checks=checks)
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return Health(status="unavailable", checks=checks)


Answer = tuple[bool, dict[str, str]]


class SharedAnswer:
    """The last answer, reused for `period` seconds, and the check in flight, which every
    caller waiting meanwhile shares (a caller that goes away does not cancel it)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self._answer: Answer | None = None
        self._at = 0.0
        self._running: asyncio.Task[Answer] | None = None

    async def get(self, check: Callable[[], Awaitable[Answer]]) -> Answer:
        now = asyncio.get_running_loop().time()
        if self._answer is not None and now - self._at < self.period:
            return self._answer
        if self._running is None:
            self._running = asyncio.ensure_future(self._run(check))
        return await asyncio.shield(self._running)

    async def _run(self, check: Callable[[], Awaitable[Answer]]) -> Answer:
        try:
            answer = await check()
            self._answer, self._at = answer, asyncio.get_running_loop().time()
            return answer
        finally:
            self._running = None


async def _readiness(request: Request) -> Answer:
    """Every check at once, under one deadline; a check still running then has failed."""
    db: DatabaseManager = request.app.state.db
    database = asyncio.ensure_future(_check(db, _schema(request)))
    others: dict[str, asyncio.Future[str]] = {}
    if isinstance(db, ReplicatedDatabase):
        others["replicas"] = asyncio.ensure_future(_replicas(db))
    cache = getattr(request.app.state, "cache", None)  # None: no REDIS_URL
    if cache is not None:
        others["cache"] = asyncio.ensure_future(cache.check())
    jobs: list[asyncio.Future[Any]] = [database, *others.values()]
    await asyncio.wait(jobs, timeout=db.settings.health_timeout)
    checks: dict[str, str] = _finished(database, "database") or {"database": "unavailable"}
    for name, job in others.items():
        # Replicas out of rotation and a failing cache cost speed, not correctness: reads
        # go to the primary and the database. Ready either way.
        checks[name] = _finished(job, name) or "degraded"
    ready = checks.get("database") == "ok" and checks.get("schema") in READY_SCHEMAS
    return ready, checks


def _finished(job: "asyncio.Future[T]", name: str) -> T | None:
    """A check's result; None, logged, when it failed or was still running at the deadline."""
    if not job.done():
        job.cancel()
        log.warning("readiness: the %s check did not finish in time", name)
        return None
    error = None if job.cancelled() else job.exception()
    if job.cancelled() or error is not None:
        log.warning("readiness: the %s check failed: %s", name, type(error).__name__)
        return None
    return job.result()


async def _replicas(db: "ReplicatedDatabase") -> str:
    """ok while every replica is in rotation, else degraded; which and why, in the log."""
    detail = await db.check_replicas()
    if all(replica.out is None for replica in db.replicas):
        return "ok"
    log.warning("readiness: replicas out of rotation: %s", detail)
    return "degraded"
