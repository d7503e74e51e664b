"""What each optional layer and each deployment shape costs, over HTTP, in the same run.

Prices: the default service next to the same code with one thing changed (through
PgBouncer in transaction mode, reads on a streaming replica with and without a
consistency token, metrics off, JSON logs, traces on, the Redis cache hitting or
missing), each a uvicorn process of its own, one worker, loaded in turn with the same
requests. Scale: the default service with 1, 2 and 4 workers, and on the newest Python
the template supports beside the oldest. Rounds rotate the order; CPU per request is
total CPU over total requests; p99 and throughput are medians over rounds.
"""

import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import endpoints, load, measure, prepare
from .procs import App, service_argv

REPO_DIR = Path(__file__).resolve().parents[2]
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

# The full tier's own PgBouncer and streaming replica, started as its tests start them.
from tests.harness import pgbouncer, replica

Say = Callable[[str], None]
CLOSED_PORT = "http://127.0.0.1:9"  # traces go nowhere, as with a collector that is down
TOKEN = "X-Consistency-Token"


@dataclass(frozen=True)
class Config:
    key: str
    label: str
    render: str = "default"  # "default", "cache" or "traces" (bench/run.py renders them)
    settings: dict[str, str] = field(default_factory=dict)
    endpoints: tuple[str, ...] = ("get", "create")
    server: str = "direct"  # "direct", "pgbouncer" or "replica"
    token: bool = False  # reads present the consistency token of an earlier write
    all_ids: bool = False  # reads spread over every seeded row, not 2,000 of them
    prefill: bool = False  # every read path is asked once before the warm-up
    workers: int = 0  # 0: as production's single process runs; N: uvicorn --workers N
    python: str = "oldest"  # "oldest" or "newest"


PRICES = (
    Config("default", "the default service (direct, metrics on, plain logs)"),
    Config(
        "pgbouncer",
        "through PgBouncer in transaction mode",
        settings={"DB_BEHIND_PGBOUNCER": "true"},
        server="pgbouncer",
    ),
    Config("replica", "reads on a streaming replica, no token", server="replica"),
    Config(
        "replica_token",
        "reads on the replica, each presenting a token it has replayed",
        endpoints=("get",),
        server="replica",
        token=True,
    ),
    Config("metrics_off", "metrics off", settings={"METRICS_ENABLED": "false"}),
    Config(
        "json_logs", "JSON logs (nothing is logged per request)", settings={"LOG_FORMAT": "json"}
    ),
    Config(
        "traces",
        "traces on, exported to a closed port",
        render="traces",
        settings={"OTEL_EXPORTER_OTLP_ENDPOINT": CLOSED_PORT, "OTEL_BSP_EXPORT_TIMEOUT": "100"},
    ),
    Config(
        "cache_hit",
        "Redis cache, gets hit (2,000 rows, each read once first, entries live 300 s)",
        render="cache",
        prefill=True,
    ),
    Config(
        "cache_miss",
        "Redis cache, gets mostly miss (10,000 rows, entries live 1 s)",
        render="cache",
        settings={"CACHE_TTL_SECONDS": "1"},
        endpoints=("get",),
        all_ids=True,
    ),
)
SCALE = (
    Config("workers_1", "1 worker", workers=1),
    Config("workers_2", "2 workers", workers=2),
    Config("workers_4", "4 workers", workers=4),
    Config("newest_python", "1 worker, the newest Python", workers=1, python="newest"),
)
# Each worker's pools (read, write), so that 4 workers stay inside PostgreSQL's 100
# connections and each worker's read pool still holds its share of 32 connections.
POOLS = {1: ("30", "10"), 2: ("18", "6"), 4: ("10", "4")}


@dataclass
class Servers:
    """The database servers a configuration may point at, and how to reach them."""

    url: Callable[[int | None, str | None], str]  # SQLAlchemy URL to (port, host)
    bouncer: Any = None
    standby: Any = None


def _service_app(
    config: Config,
    service: prepare.Service,
    venv: Path,
    base_env: dict[str, str],
    servers: Servers,
    logs: Path,
    port: int,
) -> App:
    env = {**base_env, **config.settings}
    if config.server == "pgbouncer":
        env["DATABASE_DIRECT_URL"] = env["DATABASE_URL"]
        env["DATABASE_URL"] = servers.url(servers.bouncer.port, "127.0.0.1")
    if config.server == "replica":
        env["DB_REPLICA_URLS"] = servers.url(servers.standby.port, "127.0.0.1")
    if config.render == "cache":
        env["CACHE_KEY_PREFIX"] = f"bench-{os.getpid()}-{config.key}"
    if config.workers:
        # As a pod runs them: uvicorn reads WEB_CONCURRENCY, the workers share a
        # metrics directory, and every worker counts in the connection budget.
        read, write = POOLS[config.workers]
        env |= {"WEB_CONCURRENCY": str(config.workers), "DB_POOL_SIZE": read}
        env |= {"DB_WRITE_POOL_SIZE": write}
        env["PROMETHEUS_MULTIPROC_DIR"] = str(logs / f"metrics-{config.key}")
    return App(
        name=config.key,
        label=config.label,
        argv=service_argv(venv, service.package, port),
        env=env,
        cwd=service.directory,
        port=port,
        ready_path="/health/ready",
        log_path=logs / f"prices-{config.key}.log",
    )


@contextmanager
def _running(app: App) -> Iterator[App]:
    metrics = app.env.get("PROMETHEUS_MULTIPROC_DIR")
    if metrics:  # a fresh directory per start, as an emptyDir gives each pod
        shutil.rmtree(metrics, ignore_errors=True)
        Path(metrics).mkdir(parents=True)
    app.start()
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def _token(app: App, standby: Any) -> str:
    """A write's consistency token, once the replica has replayed past it."""
    body = b'{"name":"Token","slug":"load-token-%d","description":"x"}' % time.time_ns()
    status, answer, headers = endpoints.fetch(app.port, "POST", endpoints.BASE, body)
    token = {name.lower(): value for name, value in headers.items()}.get(TOKEN.lower())
    if status != 201 or not token:
        raise RuntimeError(f"a create through the replica config gave {status} {answer[:200]!r}")
    deadline = time.monotonic() + 10
    while standby.replay_lsn() < replica.lsn(token):
        if time.monotonic() > deadline:
            raise RuntimeError("the replica did not replay the token's position within 10 s")
        time.sleep(0.05)
    return f"{TOKEN}: {token}"


def _read_each(app: App, paths: Path) -> None:
    """GET every path of the file once, in turn (fills a cache with every entry)."""
    for path in paths.read_text(encoding="utf-8").split():
        status, body, _ = endpoints.fetch(app.port, "GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path} gave {status}: {body[:200]!r}")


def _cache_events(port: int) -> dict[str, float]:
    """cache_events_total by event, from the service's /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("cache_events_total{"):
            labels, value = line.rsplit(" ", 1)
            event = labels.split('event="', 1)[1].split('"', 1)[0]
            found[event] = found.get(event, 0.0) + float(value)
    return found


@dataclass
class Phase:
    """What both phases share: the renders, venvs, servers and load settings."""

    services: dict[str, prepare.Service]
    venvs: dict[str, Path]  # "oldest", "newest" -> venv
    base_env: dict[str, str]
    database: str
    paths: dict[str, Path]  # "get" (2,000 ids), "get_all" (every id)
    settings: load.Settings
    logs: Path
    seconds: float
    warmup: float
    say: Say
    free_port: Callable[[], int]
    cleanup: Callable[[], None]


def run(phase: Phase, configs: tuple[Config, ...], rounds: int, servers: Servers) -> dict[str, Any]:
    """Every configuration, every round in rotating order; per config and endpoint the
    rounds' windows and their summary."""
    windows: dict[str, dict[str, list[dict[str, Any]]]] = {}
    extras: dict[str, dict[str, Any]] = {}
    order = list(configs)
    for number in range(1, rounds + 1):
        for config in order:
            venv = phase.venvs[config.python]
            service = phase.services[config.render]
            app = _service_app(
                config, service, venv, phase.base_env, servers, phase.logs, phase.free_port()
            )
            with _running(app):
                header = _token(app, servers.standby) if config.token else ""
                if config.prefill:
                    _read_each(app, phase.paths["get_all" if config.all_ids else "get"])
                before = _cache_events(app.port) if config.render == "cache" else None
                for key in config.endpoints:
                    if key == "create":
                        pair = tuple(
                            load.Workload("create", f"load-{config.key.replace('_', '-')}-{tag}")
                            for tag in (f"p{number}", f"r{number}")
                        )
                    else:
                        paths = phase.paths["get_all" if config.all_ids else "get"]
                        pair = (load.Workload("paths", str(paths), header),) * 2
                    got = measure.window(
                        app, pair, phase.settings, phase.database, phase.seconds, phase.warmup
                    )
                    windows.setdefault(config.key, {}).setdefault(key, []).append(got.as_dict())
                    cpu = 1000 * got.server_cpu_s / max(got.load.requests, 1)
                    phase.say(
                        f"round {number} {config.key:<14} {key:<7} {got.load.rps:7.0f} req/s "
                        f"p99 {got.load.p99_ms:6.1f} ms  cpu {cpu:.3f} ms/req  "
                        f"errors {sum(got.load.errors.values())}"
                    )
                if before is not None:
                    after = _cache_events(app.port)
                    events = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after}
                    extras.setdefault(config.key, {}).setdefault("cache_events", []).append(events)
        phase.cleanup()
        order = order[1:] + order[:1]
    return {
        "labels": {config.key: config.label for config in configs},
        "summary": {key: _summary(by_endpoint) for key, by_endpoint in windows.items()},
        "extras": extras,
        "windows": windows,
    }


def _summary(by_endpoint: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for key, rounds in by_endpoint.items():
        requests = sum(r["load"]["requests"] for r in rounds)
        duration = sum(r["load"]["duration_s"] for r in rounds)
        errors = sum(sum(r["load"]["errors"].values()) for r in rounds)
        out[key] = {
            "rounds": len(rounds),
            "requests": requests,
            "errors": errors,
            "slow": sum(r["load"]["slow"] for r in rounds),
            "max_ms": max(r["load"]["max_ms"] for r in rounds),
            "rps": statistics.median(r["load"]["rps"] for r in rounds),
            "p99_ms": statistics.median(r["load"]["p99_ms"] for r in rounds),
            "cpu_ms": 1000 * sum(r["server_cpu_s"] for r in rounds) / max(requests, 1),
            "cpu_ms_by_round": [
                1000 * r["server_cpu_s"] / max(r["load"]["requests"], 1) for r in rounds
            ],
            "pg_cpu_ms": 1000 * sum(r["pg_cpu_s"] for r in rounds) / max(requests, 1),
            # Cores each side kept busy: what the server's extra workers buy on this machine.
            "server_cores": sum(r["server_cpu_s"] for r in rounds) / max(duration, 1e-9),
            "loader_cores": sum(r["load"]["loader_cpu_s"] for r in rounds) / max(duration, 1e-9),
            "pg_cores": sum(r["pg_cpu_s"] for r in rounds) / max(duration, 1e-9),
        }
    return out


@contextmanager
def servers(
    url: Callable[[int | None, str | None], str], configs: tuple[Config, ...]
) -> Iterator[Servers]:
    """A PgBouncer and a streaming replica, started only if a configuration needs one."""
    wanted = {config.server for config in configs}
    with ExitStack() as stack:
        found = Servers(url)
        if "pgbouncer" in wanted:
            found.bouncer = stack.enter_context(pgbouncer.pgbouncer())
        if "replica" in wanted:
            found.standby = stack.enter_context(replica.replica())
        yield found


def forget_cache(python: Path) -> None:
    """Drop the keys the cache configurations left in Redis (theirs alone: their prefix)."""
    prefix = f"bench-{os.getpid()}-"
    code = (
        "import redis, sys; r = redis.Redis(); "
        "[r.delete(k) for k in r.scan_iter(sys.argv[1] + '*')]"
    )
    subprocess.run([str(python), "-c", code, prefix], check=False, capture_output=True)
