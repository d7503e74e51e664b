"""Full tier: a rendered service under uvicorn with two workers, as it is deployed.

Its /metrics adds up both workers' figures (prometheus-client's multiprocess mode,
PROMETHEUS_MULTIPROC_DIR), whichever worker answers the scrape, its pools' state
included; with LOG_FORMAT=json every line the workers write is one JSON object.
"""

import json
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psycopg
import pytest

from .conftest import Rendered
from .harness.boot import free_port, uvicorn
from .harness.databases import scratch_database
from .harness.run import run

pytestmark = pytest.mark.full

# The sample counting GET /health/live answered 2xx, in Prometheus' text format.
LIVE = re.compile(
    r'^http_request_duration_seconds_count\{method="GET",route="/health/live",status="2xx"\} '
    r"(\S+)$",
    re.MULTILINE,
)
# The supervising process never imports the app: its lines keep uvicorn's own format.
SUPERVISOR = ("Uvicorn running on", "parent process", "child process", "Received SIG")


def worker_of(response: httpx.Response) -> str:
    """The worker that answered: generated request ids start with a per-process prefix."""
    return response.headers["x-request-id"].rsplit("-", 1)[0]


def live_requests_counted(body: str) -> float:
    found = LIVE.search(body)
    return float(found.group(1)) if found else 0.0


def scrape_each_worker(base: str) -> dict[str, float]:
    """Live requests counted, as seen by a scrape answered by each of the two workers."""
    seen: dict[str, float] = {}
    for _ in range(200):  # a new connection each time: the kernel picks the worker
        response = httpx.get(f"{base}/metrics", timeout=5)
        assert response.status_code == 200
        seen[worker_of(response)] = live_requests_counted(response.text)
        if len(seen) == 2:
            return seen
    raise AssertionError(f"only {len(seen)} worker answered 200 scrapes")


def test_two_workers_one_set_of_figures_and_json_lines(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    rendered = render("default")
    bin_dir = venv_for(rendered)
    figures = tmp_path / "prometheus"
    figures.mkdir()
    log = tmp_path / "uvicorn.log"
    with scratch_database("postgresql", "observability") as url:
        env = {
            "DATABASE_URL": url,
            "PROMETHEUS_MULTIPROC_DIR": str(figures),
            "LOG_FORMAT": "json",
            "WEB_CONCURRENCY": "2",
            "DB_POOL_SIZE": "2",
            "DB_WRITE_POOL_SIZE": "1",
        }
        migrated = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        with uvicorn(
            bin_dir, rendered.path, rendered.package, env, timeout=120, workers=2, log=log
        ) as base:
            before = scrape_each_worker(base)
            assert len(set(before.values())) == 1, before  # both see every worker's count
            served = spread_requests(base)
            after = scrape_each_worker(base)
    total = sum(served.values())
    assert after == {worker: next(iter(before.values())) + total for worker in after}, (
        before,
        served,
        after,
    )
    lines = log.read_text().splitlines()
    records = [json.loads(line) for line in lines if line.startswith("{")]
    others = [line for line in lines if not line.startswith("{")]
    assert [line for line in others if not any(s in line for s in SUPERVISOR)] == []
    started = [r for r in records if r["message"].startswith("Started server process")]
    assert len(started) == 2 and {r["logger"] for r in started} == {"uvicorn.error"}
    assert {"time", "level", "logger", "message", "request_id"} <= set(records[0])


def spread_requests(base: str) -> dict[str, int]:
    """GET /health/live until both workers have served some; requests by worker."""
    served: dict[str, int] = {}
    for _ in range(400):  # a new connection each time: the kernel picks the worker
        response = httpx.get(f"{base}/health/live", timeout=5)
        assert response.status_code == 200
        served[worker_of(response)] = served.get(worker_of(response), 0) + 1
        if len(served) == 2 and sum(served.values()) >= 20:
            return served
    raise AssertionError(f"one worker served all {sum(served.values())} requests")


def test_a_metrics_port_of_its_own_serves_both_workers(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    """METRICS_PORT under two workers: the first to bind it serves everyone's figures."""
    rendered = render("default")
    bin_dir = venv_for(rendered)
    figures = tmp_path / "prometheus"
    figures.mkdir()
    port = free_port()
    log = tmp_path / "uvicorn.log"
    with scratch_database("postgresql", "metrics_port") as url:
        env = {
            "DATABASE_URL": url,
            "PROMETHEUS_MULTIPROC_DIR": str(figures),
            "METRICS_PORT": str(port),
            "DB_POOL_SIZE": "2",
            "DB_WRITE_POOL_SIZE": "1",
        }
        with uvicorn(
            bin_dir, rendered.path, rendered.package, env, timeout=120, workers=2, log=log
        ) as base:
            assert httpx.get(f"{base}/metrics", timeout=5).status_code == 404
            before = live_requests_counted(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
            served = spread_requests(base)
            after = live_requests_counted(httpx.get(f"http://127.0.0.1:{port}/metrics").text)
    assert after - before == sum(served.values()), (before, served, after)
    assert log.read_text().count("is served by another worker") == 1


def pool_gauge(body: str, name: str, pool: str) -> float:
    """A pool gauge's sample, in Prometheus' text format (0 if absent)."""
    found = re.search(rf'^{name}\{{pool="{pool}"\}} (\S+)$', body, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def pools_seen_by_each_worker(base: str) -> dict[str, dict[str, float]]:
    """The read pools' gauges, as a scrape answered by each of the two workers shows them."""
    seen: dict[str, dict[str, float]] = {}
    names = ("size", "checked_out", "idle", "overflow", "waiting")
    for _ in range(200):  # a new connection each time: the kernel picks the worker
        response = httpx.get(f"{base}/metrics", timeout=5)
        assert response.status_code == 200
        body = response.text
        seen[worker_of(response)] = {n: pool_gauge(body, f"db_pool_{n}", "read") for n in names}
        seen[worker_of(response)]["write_size"] = pool_gauge(body, "db_pool_size", "write")
        if len(seen) == 2:
            return seen
    raise AssertionError(f"only {len(seen)} worker answered 200 scrapes")


# Reads held in the database at once, spread over the two workers by the kernel.
HELD = 8
# Longer than a worker takes to write its pools' state for the others' scrapes
# (REFRESH_SECONDS in kit/observability/metrics.py).
REFRESHED = 1.5


def test_every_scrape_shows_both_workers_pools_as_they_are(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    """Connections in use in both workers at once (reads waiting on a table lock), then
    none: each scrape, whichever worker answers, shows both workers' pools as they are
    then. The gauges are read from the pools, and a worker cannot read another's: each
    writes its own for the others' scrapes. Were that left to each worker's own scrapes,
    the first scrape of each phase would add a fresh figure to a stale one (missed only
    when one worker holds every read and answers first both times)."""
    rendered = render("default")
    bin_dir = venv_for(rendered)
    figures = tmp_path / "prometheus"
    figures.mkdir()
    with scratch_database("postgresql", "pool_gauges") as url:
        env = {
            "DATABASE_URL": url,
            "PROMETHEUS_MULTIPROC_DIR": str(figures),
            "WEB_CONCURRENCY": "2",
            "DB_POOL_SIZE": str(HELD),  # a worker that gets every held read has room
            "DB_WRITE_POOL_SIZE": "1",
        }
        migrated = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        with (
            uvicorn(bin_dir, rendered.path, rendered.package, env, timeout=120, workers=2) as base,
            ThreadPoolExecutor(HELD) as pool,
        ):
            idle = pools_seen_by_each_worker(base)
            with psycopg.connect(url.replace("+asyncpg", "")) as lock:
                lock.execute("LOCK TABLE project IN ACCESS EXCLUSIVE MODE")
                reads = [
                    pool.submit(httpx.get, f"{base}/api/v1/projects", timeout=30)
                    for _ in range(HELD)
                ]
                time.sleep(REFRESHED)
                holding = pools_seen_by_each_worker(base)
                lock.rollback()
            served = [worker_of(read.result()) for read in reads]
            time.sleep(REFRESHED)
            after = pools_seen_by_each_worker(base)
    both = {"size": 2 * HELD, "write_size": 2, "overflow": 0, "waiting": 0}
    for worker, seen in (idle | holding | after).items():
        assert {k: seen[k] for k in both} == both, (worker, seen)
    assert [seen["checked_out"] for seen in idle.values()] == [0, 0], idle
    assert [seen["checked_out"] for seen in holding.values()] == [HELD, HELD], (holding, served)
    assert [seen["checked_out"] for seen in after.values()] == [0, 0], after
    # Each read's connection went back to its worker's pool, where it stays open.
    assert [seen["idle"] for seen in after.values()] == [HELD, HELD], after
