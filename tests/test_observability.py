"""Full tier: a rendered service under uvicorn with two workers, as it is deployed.

Its /metrics adds up both workers' figures (prometheus-client's multiprocess mode,
PROMETHEUS_MULTIPROC_DIR), whichever worker answers the scrape; with LOG_FORMAT=json
every line the workers write is one JSON object.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path

import httpx
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
