"""The jobs' figures on /metrics, on the real server: the queue's depth by job and
status and its oldest ready job's age, read from the queue at each scrape (by the
service and by the worker), and the worker's runs by outcome (succeeded, retried,
failed, released)."""

import asyncio
from typing import Any

import httpx
import pytest
from service.kit.db.session import WriteSession
from service.kit.jobs import JobRun, Jobs
from service.kit.observability.metrics import scrape as scrape_here
from service.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .test_jobs_worker import enqueue_one, job_row, unique, until, worker
from .test_metrics import Scrape, free_port, running, scrape, statements_on

DEPTH = "jobs_queue_depth"
OLDEST = "jobs_oldest_ready_seconds"
RUNS = "jobs_runs_total"


async def _set(engine: AsyncEngine, statement: str, **params: Any) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(statement), params)


@pytest.mark.postgresql
async def test_a_scrape_of_the_service_reads_the_queue_depth_and_its_oldest_ready_job(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    name = unique("depth")
    first = await enqueue_one(committing_sessions, name)
    second = await enqueue_one(committing_sessions, name)
    third = await enqueue_one(committing_sessions, name)
    # The first waited a minute; the third waits for a retry's backoff, so is not ready.
    await _set(
        engine, "UPDATE pgqueuer SET created = now() - interval '60 s' WHERE id = :id", id=first
    )
    await _set(
        engine,
        "UPDATE pgqueuer SET execute_after = now() + interval '1 h' WHERE id = :id",
        id=third,
    )
    async with running(settings.model_copy(update={"jobs_enabled": True})) as (_, http):
        seen = await scrape(http)
        assert seen(DEPTH, job=name, status="queued") == 3
        assert 60 <= seen(OLDEST, job=name) < 120
        await _set(engine, "UPDATE pgqueuer SET status = 'failed' WHERE id = :id", id=second)
        seen = await scrape(http)
        assert seen(DEPTH, job=name, status="queued") == 2
        assert seen(DEPTH, job=name, status="failed") == 1
        # Gone from the queue: reported as none, not as the last figure seen.
        await _set(engine, "DELETE FROM pgqueuer WHERE entrypoint = :name", name=name)
        seen = await scrape(http)
        assert seen(DEPTH, job=name, status="queued") == 0
        assert seen(DEPTH, job=name, status="failed") == 0
        assert seen(OLDEST, job=name) == 0


@pytest.mark.postgresql
async def test_the_queue_is_read_for_a_scrape_of_the_metrics_port_too(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    """METRICS_PORT (what the Kubernetes base sets): prometheus-client's server answers
    in a thread of its own, and the queue is read on the app's loop for it."""
    name = unique("ported")
    await enqueue_one(committing_sessions, name)
    port = free_port()
    update = {"jobs_enabled": True, "metrics_port": port}
    async with running(settings.model_copy(update=update)), httpx.AsyncClient() as outside:
        response = await outside.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert Scrape(response.text)(DEPTH, job=name, status="queued") == 1
    await _set(engine, "DELETE FROM pgqueuer WHERE entrypoint = :name", name=name)


@pytest.mark.postgresql
async def test_the_worker_counts_its_runs_by_outcome_and_reports_the_queue(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    good, bad = unique("good"), unique("bad")
    jobs = Jobs()

    @jobs.job(good)
    async def fine(run: JobRun) -> None:
        pass

    @jobs.job(bad, retries=1)
    async def broken(run: JobRun) -> None:
        raise RuntimeError("the receiver is down")

    before = Scrape((await scrape_here())[0].decode())
    fine_id = await enqueue_one(committing_sessions, good)
    broken_id = await enqueue_one(committing_sessions, bad)
    async with worker(settings, jobs):

        async def settled() -> bool:
            row = await job_row(engine, broken_id)
            return (
                await job_row(engine, fine_id) is None
                and row is not None
                and row["status"] == "failed"
            )

        await until(settled, 20, "one job done, the other failed")
        await asyncio.sleep(0.2)  # the outcome is counted as pgqueuer records it
        after = Scrape((await scrape_here())[0].decode())

    def moved(**labels: str) -> float:
        return after(RUNS, **labels) - before(RUNS, **labels)

    assert moved(job=good, outcome="succeeded") == 1
    assert moved(job=bad, outcome="retried") == 1
    assert moved(job=bad, outcome="failed") == 1
    assert moved(job=bad, outcome="succeeded") == 0
    # The worker reports the queue at its scrapes too.
    assert after(DEPTH, job=bad, status="failed") == 1


async def test_without_jobs_a_scrape_reads_no_queue(settings: Settings) -> None:
    """JOBS_ENABLED off (the default, and every backend but PostgreSQL): the scrape
    sends nothing to the database for the queue."""
    async with running(settings) as (app, http):
        with statements_on(app.state.db.probe_engine) as sent:
            await scrape(http)
    assert [each for each in sent if "pgqueuer" in each] == []
