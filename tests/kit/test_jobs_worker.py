"""The jobs worker (kit/jobs/worker.py, runner.py, executor.py) on the real server:
retries with backoff to the failed view and back, timeouts, a killed worker's job run
again elsewhere with one effect, SIGTERM's grace period, NOTIFY waking an idle worker.
On MariaDB and SQLite the worker command refuses to start, in one line.

Workers run in this process (`serve`) or as processes of their own (jobs_worker.py),
each on a job name of its test alone: the queue's tables outlive each test.
"""

import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.jobs import JobRun, Jobs, enqueue, list_failed, retry_failed
from service.kit.jobs.records import prune_log
from service.kit.observability.logging import RequestIdFilter, request_id_var
from service.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .conftest import SERVICE_ROOT

WORKER = Path(__file__).with_name("jobs_worker.py")
# A short lease and poll, so that recovery takes seconds.
QUICK = {"jobs_lease_seconds": 2.0, "jobs_poll_seconds": 1.0, "jobs_backoff_seconds": 0.05}


def unique(label: str) -> str:
    return f"{label}_{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def worker(settings: Settings, jobs: Jobs, **update: Any) -> AsyncIterator[asyncio.Event]:
    """The kit's worker in this process, stopped (and waited for) at the end; setting
    the event it gives stops it sooner."""
    from service.kit.jobs.runner import serve

    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings.model_copy(update=QUICK | update), jobs, stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def enqueue_one(
    sessions: async_sessionmaker[WriteSession], name: str, payload: dict[str, Any] | None = None
) -> int:
    @unit_of_work
    async def write(session: WriteSession) -> int | None:
        return await enqueue(session, name, payload or {})

    async with sessions() as session:
        job_id = await write(session)
    assert job_id is not None
    return job_id


async def job_row(engine: AsyncEngine, job_id: int) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = await conn.execute(
            text("SELECT status, attempts FROM pgqueuer WHERE id = :id"), {"id": job_id}
        )
        found = row.mappings().first()
        return None if found is None else dict(found)


async def until(check: Callable[[], Awaitable[bool]], seconds: float, what: str) -> float:
    """Wait until `check()` holds; the seconds it took."""
    start = time.monotonic()
    while not await check():
        if time.monotonic() - start > seconds:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def effects(engine: AsyncEngine, key: str) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM job_effects WHERE key = :k"), {"k": key}
        )
    return int(count or 0)


@pytest.mark.postgresql
async def test_a_failing_job_runs_its_retries_then_is_kept_failed_and_runs_again(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    name = unique("failing")
    runs: list[int] = []
    broken = True
    jobs = Jobs()

    @jobs.job(name, retries=2)
    async def handler(run: JobRun) -> None:
        runs.append(run.attempt)
        if broken:
            raise RuntimeError("the receiver is down")

    job_id = await enqueue_one(committing_sessions, name)
    async with worker(settings, jobs):

        async def failed() -> bool:
            row = await job_row(engine, job_id)
            return row is not None and row["status"] == "failed"

        await until(failed, 20, "the job kept as failed")
        assert runs == [1, 2, 3]  # the first run and its two retries
        async with committing_sessions() as session:
            listed = [job for job in await list_failed(session) if job.id == job_id]
        assert [(job.name, job.runs) for job in listed] == [(name, 3)]

        broken = False

        @unit_of_work
        async def again(session: WriteSession) -> None:
            await retry_failed(session, [job_id])

        async with committing_sessions() as session:
            await again(session)

        async def done() -> bool:
            return await job_row(engine, job_id) is None

        await until(done, 20, "the job run again and done")
    assert runs == [1, 2, 3, 1]  # retries renewed


@pytest.mark.postgresql
async def test_a_run_past_its_timeout_is_cancelled_and_fails_through_its_retries(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    name = unique("slow")
    runs: list[int] = []
    jobs = Jobs()

    @jobs.job(name, retries=1, timeout=0.2)
    async def handler(run: JobRun) -> None:
        runs.append(run.attempt)
        await asyncio.sleep(60)

    job_id = await enqueue_one(committing_sessions, name)
    async with worker(settings, jobs):

        async def failed() -> bool:
            row = await job_row(engine, job_id)
            return row is not None and row["status"] == "failed"

        await until(failed, 20, "the slow job kept as failed")
    assert runs == [1, 2]


@pytest.mark.postgresql
async def test_an_idle_worker_wakes_on_the_commit_of_a_job(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    """The worker listens on its own connection to the server (DATABASE_DIRECT_URL
    behind PgBouncer): a job committed through DATABASE_URL runs at once, not at the
    next look at the queue (30 s here)."""
    name = unique("woken")
    ran: dict[int, float] = {}
    jobs = Jobs()

    @jobs.job(name)
    async def handler(run: JobRun) -> None:
        ran[run.id] = time.monotonic()

    first = await enqueue_one(committing_sessions, name)
    async with worker(settings, jobs, jobs_poll_seconds=30.0):

        async def ran_first() -> bool:
            return first in ran

        await until(ran_first, 20, "the first job run")
        await asyncio.sleep(2)  # the worker is idle, waiting for a NOTIFY
        committed = time.monotonic()
        second = await enqueue_one(committing_sessions, name)

        async def ran_second() -> bool:
            return second in ran

        await until(ran_second, 10, "the second job run")
    assert ran[second] - committed < 5, ran[second] - committed


@pytest.mark.postgresql
async def test_a_periodic_job_is_enqueued_once_a_tick_across_workers(
    settings: Settings, engine: AsyncEngine
) -> None:
    """Two workers share a schedule of every second: each tick enqueues one job (a real
    one, run by the queue), not one per worker."""
    name = unique("periodic")
    ticks: list[str] = []
    jobs = Jobs()

    @jobs.periodic(name, "* * * * * *")  # croniter's sixth field: every second
    async def tick(run: JobRun) -> None:
        ticks.append(str(run.payload["tick"]))

    async with worker(settings, jobs), worker(settings, jobs):
        await asyncio.sleep(4.5)
    assert len(ticks) >= 2, ticks
    assert sorted(set(ticks)) == sorted(ticks), ticks  # no tick ran twice


@pytest.mark.postgresql
async def test_a_job_logs_with_the_id_of_the_request_that_enqueued_it(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = unique("logged")
    seen: list[tuple[str, str]] = []
    jobs = Jobs()

    @jobs.job(name)
    async def handler(run: JobRun) -> None:
        logging.getLogger("service.jobs").warning("handling %s", run.id)
        seen.append((run.request_id, request_id_var.get()))

    token = request_id_var.set("r-77")
    try:
        job_id = await enqueue_one(committing_sessions, name)
    finally:
        request_id_var.reset(token)
    caplog.handler.addFilter(RequestIdFilter())
    async with worker(settings, jobs):

        async def ran() -> bool:
            return bool(seen)

        await until(ran, 20, "the job run")
    assert seen == [("r-77", "r-77")]
    [record] = [r for r in caplog.records if r.getMessage() == f"handling {job_id}"]
    assert getattr(record, "request_id", None) == "r-77"


def worker_env(settings: Settings, name: str, role: str, **extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(SERVICE_ROOT / "src"),
        "DATABASE_URL": settings.database_url.render_as_string(hide_password=False),
        "DB_POOL_SIZE": "2",
        "DB_WRITE_POOL_SIZE": "2",
        "JOBS_TEST_NAME": name,
        "JOBS_TEST_ROLE": role,
        "JOBS_LEASE_SECONDS": "2",
        "JOBS_POLL_SECONDS": "1",
    }
    return env | extra


@asynccontextmanager
async def worker_process(
    settings: Settings, name: str, role: str, **extra: str
) -> AsyncIterator[asyncio.subprocess.Process]:
    """jobs_worker.py as a process of its own; its log (stderr) in a file, which a full
    pipe cannot block."""
    with tempfile.TemporaryFile() as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(WORKER),
            env=worker_env(settings, name, role, **extra),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
        )
        LOGS[process.pid] = log
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
            await process.wait()
            del LOGS[process.pid]


LOGS: dict[int, IO[bytes]] = {}


def log_of(process: asyncio.subprocess.Process) -> str:
    log = LOGS[process.pid]
    log.seek(0)
    return log.read().decode()


async def line(process: asyncio.subprocess.Process, seconds: float = 30) -> str:
    """The next line the worker's handler printed."""
    assert process.stdout is not None
    try:
        read = await asyncio.wait_for(process.stdout.readline(), timeout=seconds)
    except TimeoutError:
        read = b""
    if not read:
        raise AssertionError(f"no line from the worker; its log:\n{log_of(process)[-3000:]}")
    return read.decode().strip()


@pytest.mark.postgresql
async def test_a_killed_workers_job_runs_again_on_another_worker_with_one_effect(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    """kill -9 after the job's effect committed: another worker picks the job once its
    lease (2 s) runs out, runs it, and `once` keeps the effect single."""
    name = unique("killed")
    job_id = await enqueue_one(committing_sessions, name)
    async with worker_process(settings, name, "hang") as victim:
        assert await line(victim) == f"started {job_id} effect"
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
    row = await job_row(engine, job_id)
    assert row is not None and row["status"] == "picked"  # the dead worker's lease
    killed = time.monotonic()
    async with worker_process(settings, name, "finish") as rescuer:
        assert await line(rescuer) == f"started {job_id} no-effect"
        assert await line(rescuer) == f"finished {job_id}"
        rerun_after = time.monotonic() - killed

        async def done() -> bool:
            return await job_row(engine, job_id) is None

        await until(done, 10, "the job done")
        rescuer.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(rescuer.wait(), timeout=30) == 0
    assert await effects(engine, f"{name}:{job_id}") == 1
    assert rerun_after < 20, rerun_after


@pytest.mark.postgresql
async def test_sigterm_lets_a_running_job_finish_within_the_grace_period(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    name = unique("graceful")
    job_id = await enqueue_one(committing_sessions, name, {"seconds": 1})
    grace = {"JOBS_SHUTDOWN_GRACE_SECONDS": "20"}
    async with worker_process(settings, name, "finish", **grace) as process:
        assert await line(process) == f"started {job_id} effect"
        process.send_signal(signal.SIGTERM)
        assert await line(process) == f"finished {job_id}"
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
    assert await job_row(engine, job_id) is None  # done, not left picked
    async with engine.connect() as conn:
        outcome = await conn.scalar(
            text("SELECT status::text FROM pgqueuer_log WHERE job_id = :id ORDER BY id DESC"),
            {"id": job_id},
        )
    assert outcome == "successful"


@pytest.mark.postgresql
async def test_sigterm_releases_a_job_still_running_after_the_grace_period(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    """The job is cancelled and queued again at once, and another worker runs it (its
    effect, written by the first run, stays single)."""
    name = unique("released")
    job_id = await enqueue_one(committing_sessions, name)
    grace = {"JOBS_SHUTDOWN_GRACE_SECONDS": "1"}
    async with worker_process(settings, name, "hang", **grace) as process:
        assert await line(process) == f"started {job_id} effect"
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=15) == 0
        stopped_after = time.monotonic() - stopping
    row = await job_row(engine, job_id)
    assert row is not None and row["status"] == "queued", row
    assert 1 <= stopped_after < 10, stopped_after
    async with worker_process(settings, name, "finish") as rescuer:
        assert await line(rescuer) == f"started {job_id} no-effect"
        assert await line(rescuer) == f"finished {job_id}"
    assert await effects(engine, f"{name}:{job_id}") == 1


@pytest.mark.mysql
@pytest.mark.sqlite
async def test_the_worker_refuses_a_database_without_the_queue(settings: Settings) -> None:
    async with worker_process(settings, unique("refused"), "finish") as process:
        assert await asyncio.wait_for(process.wait(), timeout=60) != 0
        output = log_of(process).strip()
    assert output.splitlines()[-1].startswith("the jobs worker needs PostgreSQL"), output
    assert "Traceback" not in output, output


@pytest.mark.postgresql
async def test_the_job_log_is_pruned_to_its_retention(
    committing_sessions: async_sessionmaker[WriteSession], engine: AsyncEngine, app: Any
) -> None:
    name = unique("pruned")
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO pgqueuer_log (created, job_id, status, priority, entrypoint) "
                "VALUES (now() - interval '30 days', 0, 'successful', 0, :n), "
                "(now() - interval '1 day', 0, 'successful', 0, :n)"
            ),
            {"n": name},
        )
    assert await prune_log(app.state.db, timedelta(days=14)) >= 1
    async with engine.connect() as conn:
        left = await conn.scalar(
            text("SELECT count(*) FROM pgqueuer_log WHERE entrypoint = :n"), {"n": name}
        )
    assert left == 1
