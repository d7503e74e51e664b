"""Many jobs, several workers, on the real server: three worker processes (jobs_worker.py)
share 2,000 jobs, and each job's effect happens exactly once, none lost; then 1,000
while the workers' connections to the server are terminated, again and again, mid-run.

Each job names its effect (`key`), and its handler writes it as a row of
`jobs_test_effects`, whose key is not unique, in the unit of work of its `once`: a job
run twice with two effects would leave two rows, a job lost none.
"""

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import pytest
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.jobs import enqueue
from service.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .test_jobs_worker import log_of, unique, worker_process

JOBS = 2000
# The sweeps' run: half as many, each job's effect slower to reach (retries, leases).
SWEPT_JOBS = 1000
WORKERS = 3
# Jobs enqueued per unit of work.
BATCH = 250
# Room for the sweeps: a run may fail once per sweep that cuts its connection.
SWEPT = {
    "JOBS_RETRIES": "20",
    "JOBS_BACKOFF_SECONDS": "0.05",
    "JOBS_MAX_BACKOFF_SECONDS": "0.5",
}


@pytest.fixture
async def effects_table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE IF NOT EXISTS jobs_test_effects (key text NOT NULL)"))


async def enqueue_many(
    sessions: async_sessionmaker[WriteSession], name: str, count: int = JOBS
) -> list[str]:
    """`count` jobs of `name`, a unit of work per BATCH; their effects' keys."""
    keys = [f"{name}:{n}" for n in range(count)]

    @unit_of_work
    async def write(session: WriteSession, batch: list[str]) -> None:
        for key in batch:
            await enqueue(session, name, {"key": key})

    for start in range(0, count, BATCH):
        async with sessions() as session:
            await write(session, keys[start : start + BATCH])
    return keys


async def effects(engine: AsyncEngine, name: str) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT key, count(*) FROM jobs_test_effects WHERE key LIKE :prefix GROUP BY key"),
            {"prefix": f"{name}:%"},
        )
        return {key: int(count) for key, count in rows.all()}


async def left(engine: AsyncEngine, name: str) -> int:
    """The jobs still in the queue: queued, running, or kept as failed."""
    async with engine.connect() as conn:
        count = await conn.scalar(
            text("SELECT count(*) FROM pgqueuer WHERE entrypoint = :name"), {"name": name}
        )
    return int(count or 0)


@asynccontextmanager
async def workers(
    settings: Settings, name: str, **extra: str
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    async with AsyncExitStack() as stack:
        yield [
            await stack.enter_async_context(worker_process(settings, name, "effect", **extra))
            for _ in range(WORKERS)
        ]


async def until_drained(
    engine: AsyncEngine, name: str, processes: list[asyncio.subprocess.Process], seconds: float
) -> None:
    deadline = time.monotonic() + seconds
    while await left(engine, name):
        for process in processes:
            assert process.returncode is None, log_of(process)[-3000:]
        assert time.monotonic() < deadline, f"jobs left after {seconds}s"
        await asyncio.sleep(0.2)


@pytest.mark.postgresql
@pytest.mark.usefixtures("effects_table")
async def test_three_workers_run_2000_jobs_each_with_exactly_one_effect(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    name = unique("load")
    keys = await enqueue_many(committing_sessions, name)
    async with workers(settings, name) as processes:
        await until_drained(engine, name, processes, 120)
        assert [process.returncode for process in processes] == [None] * WORKERS
    assert await effects(engine, name) == dict.fromkeys(keys, 1)


@pytest.mark.postgresql
@pytest.mark.usefixtures("effects_table")
async def test_connection_sweeps_mid_run_lose_no_job_and_double_no_effect(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    """Every 0.3 s, while jobs are left, every connection the workers hold to the server
    (their queue connections, their pools) is terminated, as a restart of the server or
    a failover would: runs fail, leases lapse, outcomes go unrecorded. The workers
    connect again by themselves, and every job still has exactly one effect."""
    name = unique("swept")
    application = f"sweep-{uuid.uuid4().hex[:8]}"
    keys = await enqueue_many(committing_sessions, name, SWEPT_JOBS)
    swept: list[tuple[int, int]] = []  # (connections terminated, effects so far) each sweep
    terminate = text(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name LIKE :workers"
    )
    env = {**SWEPT, "DB_APPLICATION_NAME": application}
    async with workers(settings, name, **env) as processes:
        while await left(engine, name) and len(swept) < 8:
            await asyncio.sleep(0.3)
            done = len(await effects(engine, name))
            if not done:
                continue  # not started yet
            async with engine.connect() as conn:
                terminated = await conn.scalar(terminate, {"workers": f"{application}%"})
            swept.append((int(terminated or 0), done))
        await until_drained(engine, name, processes, 180)
        assert [process.returncode for process in processes] == [None] * WORKERS
    mid_run = [(cut, done) for cut, done in swept if cut and done < SWEPT_JOBS]
    assert len(mid_run) >= 3, swept
    assert await effects(engine, name) == dict.fromkeys(keys, 1)


@pytest.mark.mysql
@pytest.mark.sqlite
async def test_a_batch_of_jobs_is_refused_where_there_is_no_queue(
    committing_sessions: async_sessionmaker[WriteSession],
) -> None:
    with pytest.raises(RuntimeError, match="background jobs are a PostgreSQL queue"):
        await enqueue_many(committing_sessions, unique("refused"), 3)
