"""The worker's loop: pgqueuer's queue and scheduler on one connection to the server,
the service's handlers run by the kit's executor (executor.py).

The connection goes to DATABASE_DIRECT_URL when it is set (behind PgBouncer, whose
transaction pooling would lose a LISTEN): it listens for new jobs, picks them
(FOR UPDATE SKIP LOCKED), beats their leases and records their outcomes. Handlers use
the service's own pools (`run.db`), as requests do.
"""

import asyncio
import json
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from datetime import timedelta

import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Schedule
from pgqueuer.queries import Queries
from sqlalchemy import text

from ..db.engine import DatabaseManager
from ..replicas.replicas import open_database
from ..settings import KitSettings
from .executor import KitExecutor
from .executor import parameters
from .health import serve_health
from .metrics import report_queue
from .metrics import stop_reporting_queue
from .records import prune_log
from .registry import JobRun
from .registry import Jobs
from .registry import JobSpec

log = logging.getLogger(__name__)

# The kit's own periodic job: the queue's event log, pruned every hour.
PRUNE_JOB = "kit_prune_job_log"
PRUNE_SCHEDULE = "17 * * * *"


async def serve(settings: KitSettings, jobs: Jobs, stop: asyncio.Event) -> None:
    """Run `jobs` until `stop` is set, then stop as the module docstring says."""
    db = open_database(settings)
    await db.connect()
    report_queue(db)
    try:
        connection = await connect_direct(settings)
        try:
            await _serve(settings, jobs, stop, db, connection)
        finally:
            await connection.close()
    finally:
        stop_reporting_queue(db)
        await db.disconnect()


async def connect_direct(settings: KitSettings) -> asyncpg.Connection:
    """The worker's own connection, to the server itself."""
    url = settings.direct_url.set(drivername="postgresql")
    connection: asyncpg.Connection = await asyncpg.connect(
        url.render_as_string(hide_password=False),
        timeout=settings.db_connect_timeout,
        server_settings={"application_name": f"{settings.db_application_name}-worker"[:63]},
    )
    return connection


def kit_jobs(settings: KitSettings) -> list[JobSpec]:
    """The jobs the kit runs for itself."""

    async def prune(run: JobRun) -> None:
        age = timedelta(days=settings.jobs_log_retention_days)
        deleted = await prune_log(run.db, age)
        log.info("pruned %d rows of the job log older than %s", deleted, age)

    return [JobSpec(PRUNE_JOB, prune, retries=2, schedule=PRUNE_SCHEDULE)]


def _enqueue_on_tick(queries: Queries, name: str) -> Callable[[Schedule], Awaitable[None]]:
    async def tick(schedule: Schedule) -> None:
        # Only a job: it gets retries, a timeout and the failed view like any other. The
        # schedule row is locked by one worker a tick; the key makes a second enqueue
        # of the same tick a no-op all the same.
        tick = schedule.next_run.isoformat()
        payload = json.dumps({"tick": tick}).encode()
        await queries.enqueue(name, payload, dedupe_key=f"{name}@{tick}", on_conflict="skip")

    return tick


async def _serve(
    settings: KitSettings,
    jobs: Jobs,
    stop: asyncio.Event,
    db: DatabaseManager,
    connection: asyncpg.Connection,
) -> None:
    released = asyncio.Event()
    driver = AsyncpgDriver(connection)
    queue = PgQueuer(driver)
    queries = Queries(driver)
    for spec in [*jobs.specs.values(), *kit_jobs(settings)]:
        executor = KitExecutor(parameters(), spec, settings, db, released)
        queue.qm.register_executor(spec.name, executor)
        if spec.schedule is not None:
            queue.sm.schedule(spec.name, spec.schedule)(_enqueue_on_tick(queries, spec.name))

    async def stop_when_told() -> None:
        await stop.wait()
        grace = settings.jobs_shutdown_grace_seconds
        log.info("stopping: no new jobs; running ones have %gs to finish", grace)
        queue.shutdown.set()
        await asyncio.sleep(grace)
        released.set()

    async def readiness() -> str | None:
        if stop.is_set():
            return "stopping"
        if connection.is_closed():
            return "the queue's connection is lost"
        try:
            async with asyncio.timeout(settings.health_timeout):
                async with db.probe_engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception:  # any failure of the probe means: not ready
            return "the database does not answer"
        return None

    port = settings.jobs_health_port
    health = None if port is None else await serve_health(port, readiness)
    watcher = asyncio.create_task(stop_when_told())
    concurrency = settings.jobs_concurrency
    log.info("worker started: %s", ", ".join(sorted(queue.qm.entrypoint_registry)))
    try:
        await queue.run(
            dequeue_timeout=timedelta(seconds=settings.jobs_poll_seconds),
            batch_size=max(1, concurrency // 2),
            max_concurrent_tasks=concurrency,
            heartbeat_timeout=timedelta(seconds=settings.jobs_lease_seconds),
        )
    finally:
        watcher.cancel()
        if health is not None:
            health.close()
    log.info("worker stopped")
