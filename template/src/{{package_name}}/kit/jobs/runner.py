"""The worker's loop: pgqueuer's queue and scheduler on one connection to the server,
the service's handlers run by the kit's executor (executor.py).

The connection goes to DATABASE_DIRECT_URL when it is set (behind PgBouncer, whose
transaction pooling would lose a LISTEN): it listens for new jobs, picks them
(FOR UPDATE SKIP LOCKED), beats their leases and records their outcomes. Handlers use
the service's own pools (`run.db`), as requests do.

When that connection is lost (a restart of the server, a failover, a terminated
backend), the worker is not ready, lets its running handlers end, and connects again,
backing off while the server stays away. The outcomes it could not record are lost with
the connection: those jobs run again once their lease is over, here or elsewhere, which
their handlers' `once` makes harmless.
"""

import asyncio
import contextlib
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
from ..observability.tracing import start_tracing
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
# The longest wait between two attempts to open the queue's connection again.
_MAX_RECONNECT_WAIT = 10.0


async def serve(settings: KitSettings, jobs: Jobs, stop: asyncio.Event) -> None:
    """Run `jobs` until `stop` is set, then stop as the module docstring says."""
    start_tracing(settings)
    db = open_database(settings)
    await db.connect()
    report_queue(db)
    queue = QueueConnection()
    port = settings.jobs_health_port
    health = None
    try:
        if port is not None:
            health = await serve_health(port, lambda: readiness(settings, db, queue, stop))
        await _serve_until_stopped(settings, jobs, stop, db, queue)
    finally:
        if health is not None:
            health.close()
        stop_reporting_queue(db)
        await db.disconnect()


class QueueConnection:
    """The worker's current connection to the queue; None while it connects again."""

    def __init__(self) -> None:
        self.current: asyncpg.Connection | None = None

    @property
    def open(self) -> bool:
        return self.current is not None and not self.current.is_closed()


class ConnectionLost(Exception):
    """The queue's connection ended under the worker."""


async def readiness(
    settings: KitSettings, db: DatabaseManager, queue: QueueConnection, stop: asyncio.Event
) -> str | None:
    if stop.is_set():
        return "stopping"
    if not queue.open:
        return "the queue's connection is lost"
    try:
        async with asyncio.timeout(settings.health_timeout):
            async with db.probe_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception:  # any failure of the probe means: not ready
        return "the database does not answer"
    return None


async def _serve_until_stopped(
    settings: KitSettings,
    jobs: Jobs,
    stop: asyncio.Event,
    db: DatabaseManager,
    queue: QueueConnection,
) -> None:
    failures = 0
    while not stop.is_set():
        try:
            queue.current = await connect_direct(settings)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            failures += 1
            wait = min(settings.db_connect_backoff * 2 ** (failures - 1), _MAX_RECONNECT_WAIT)
            log.warning(
                "the queue's connection cannot be opened (%s); trying again in %.1fs",
                type(error).__name__,
                wait,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            continue
        failures = 0
        try:
            await _serve(settings, jobs, stop, db, queue.current)
        except ConnectionLost:
            log.warning("the queue's connection is lost: connecting again")
        finally:
            connection, queue.current = queue.current, None
            await connection.close(timeout=settings.db_connect_timeout)


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
    """pgqueuer on `connection` until `stop` is set; `ConnectionLost` if it ends first."""
    released = asyncio.Event()
    lost = asyncio.Event()
    connection.add_termination_listener(lambda _: lost.set())
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

    watcher = asyncio.create_task(stop_when_told())
    concurrency = settings.jobs_concurrency
    log.info("worker started: %s", ", ".join(sorted(queue.qm.entrypoint_registry)))
    running = asyncio.create_task(
        queue.run(
            dequeue_timeout=timedelta(seconds=settings.jobs_poll_seconds),
            batch_size=max(1, concurrency // 2),
            max_concurrent_tasks=concurrency,
            heartbeat_timeout=timedelta(seconds=settings.jobs_lease_seconds),
        )
    )
    ended = asyncio.create_task(lost.wait())
    try:
        await asyncio.wait({running, ended}, return_when=asyncio.FIRST_COMPLETED)
        if lost.is_set() or (running.done() and connection.is_closed()):
            # pgqueuer stops picking; the running handlers end as they would (their
            # outcomes cannot be recorded: the jobs run again after their lease).
            queue.shutdown.set()
            with contextlib.suppress(Exception):
                await running
            raise ConnectionLost
        await running
    finally:
        ended.cancel()
        watcher.cancel()
        if not running.done():
            running.cancel()
            with contextlib.suppress(BaseException):
                await running
    log.info("worker stopped")
