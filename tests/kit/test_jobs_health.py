"""The worker's own health port (JOBS_HEALTH_PORT, kit/jobs/health.py) on the real
server: liveness while its loop answers, readiness while it has its database and is not
stopping, its `/metrics`, and a clear 4xx for anything else."""

import asyncio
import socket

import httpx
import pytest
from service.kit.db.session import WriteSession
from service.kit.jobs import JobRun, Jobs
from service.settings import Settings
from sqlalchemy.ext.asyncio import async_sessionmaker

from .databases import cut_off, reconnect
from .test_jobs_worker import enqueue_one, log_of, unique, until, worker, worker_process


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def raw(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


@pytest.mark.postgresql
async def test_the_worker_answers_its_probes_and_its_metrics_and_is_unready_once_stopping(
    settings: Settings, committing_sessions: async_sessionmaker[WriteSession]
) -> None:
    name = unique("probed")
    port = free_port()
    started = asyncio.Event()
    jobs = Jobs()

    @jobs.job(name)
    async def slow(run: JobRun) -> None:
        started.set()
        await asyncio.sleep(3600)

    base = f"http://127.0.0.1:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        async with worker(
            settings, jobs, jobs_health_port=port, jobs_shutdown_grace_seconds=2.0
        ) as stop:

            async def answering() -> bool:
                try:
                    return (await http.get("/health/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await until(answering, 20, "the worker ready")
            assert (await http.get("/health/live")).json() == {"status": "ok"}
            await enqueue_one(committing_sessions, name)
            await asyncio.wait_for(started.wait(), timeout=20)
            scraped = await http.get("/metrics")
            assert scraped.status_code == 200
            assert f'jobs_queue_depth{{job="{name}",status="picked"}} 1.0' in scraped.text
            assert (await http.get("/nowhere")).status_code == 404
            assert (await http.post("/health/live")).status_code == 405
            assert (await raw(port, b"garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")

            # Told to stop: not ready (a rollout moves on), still alive through the grace.
            stop.set()
            ready = await http.get("/health/ready")
            assert ready.status_code == 503
            assert ready.json() == {"status": "stopping"}
            assert (await http.get("/health/live")).status_code == 200
        # Stopped: the port is closed.
        with pytest.raises(httpx.TransportError):
            await http.get("/health/live")


@pytest.mark.postgresql
async def test_the_worker_is_unready_while_its_database_is_lost_and_recovers_by_itself(
    settings: Settings, committing_sessions: async_sessionmaker[WriteSession]
) -> None:
    """The database refuses connections and every session to it ends (its queue
    connection's too): 503 with the reason while it stays away, and, once it is back,
    200 and jobs run again (woken by NOTIFY: the worker listens again), with no restart."""
    name = unique("outage")
    port = free_port()
    ran: list[int] = []
    jobs = Jobs()

    @jobs.job(name)
    async def record(run: JobRun) -> None:
        ran.append(run.id)

    url = settings.database_url
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:

        async def status() -> tuple[int, object]:
            answer = await http.get("/health/ready")
            return answer.status_code, answer.json()

        async with worker(settings, jobs, jobs_health_port=port, jobs_poll_seconds=30.0):

            async def ready() -> bool:
                try:
                    return (await status())[0] == 200
                except httpx.TransportError:
                    return False

            await until(ready, 20, "the worker ready")
            await cut_off(url)
            try:

                async def lost() -> bool:
                    return await status() == (503, {"status": "the queue's connection is lost"})

                await until(lost, 10, "503: the queue's connection is lost")
                await asyncio.sleep(2)  # still away: still not ready
                assert (await status())[0] == 503
                assert (await http.get("/health/live")).status_code == 200
            finally:
                await reconnect(url)
            await until(ready, 30, "ready again once the database is back")
            job_id = await enqueue_one(committing_sessions, name)

            async def done() -> bool:
                return job_id in ran

            # Well within the 30 s poll: the commit's NOTIFY woke it.
            await until(done, 10, "a job enqueued after the outage run")


@pytest.mark.mysql
@pytest.mark.sqlite
async def test_a_worker_refused_at_start_up_never_opens_its_health_port(
    settings: Settings,
) -> None:
    port = free_port()
    health = {"JOBS_HEALTH_PORT": str(port)}
    async with worker_process(settings, unique("refused"), "finish", **health) as process:
        assert await asyncio.wait_for(process.wait(), timeout=60) != 0
        assert "the jobs worker needs PostgreSQL" in log_of(process)
    with pytest.raises(OSError):
        await raw(port, b"GET /health/live HTTP/1.1\r\n\r\n")
