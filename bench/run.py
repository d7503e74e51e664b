"""The template's benchmark, in one command: the rendered service against a floor app.

    python bench/run.py            # full run (~10 min on 2 cores): writes docs/benchmarks.*
    python bench/run.py --quick    # ~2 min smoke run: writes bench/results/benchmarks.*

It renders the default service from this working tree, installs it in bench/.venv,
creates its own PostgreSQL database (dropped at the end), migrates it with the
service's Alembic scripts and seeds 10,000 projects with their tasks through the
service's own repositories. Then, in one run, it starts the service as production
runs it (uvicorn, one worker, ENVIRONMENT=production, no access log), the same
service with the pool's pre-ping on, and the floor (bench/floor_app.py: Starlette,
raw asyncpg, orjson), counts each one's round trips and statements per request on
the wire, and loads them in turn with wrk, one server at a time, interleaved round
by round, reading each server's CPU time from /proc. With --previous-ref, the default service as another
template revision rendered it runs beside them, in the same run, on the same database
and the same libraries: every figure of the current render next to the previous one's.
What it measures and why: bench/README.md.
"""

import argparse
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from harness import counting, endpoints, figures, load, measure, prepare, prices, profiler, report
from harness.endpoints import ENDPOINTS
from harness.figures import FLOOR, PING, PREVIOUS, SERVICE, TODAY_REF, Window
from harness.procs import App, service_argv
from harness.wire import WireCounter

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
# Settings of the service that must come from the benchmark, not the caller's shell.
_SERVICE_VARIABLES = ("DATABASE_URL", "ENVIRONMENT", "CURSOR_SECRET", "LOG_LEVEL", "MIGRATE_")
_started = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:6.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 short round, no profile")
    parser.add_argument("--rounds", type=int, help="rounds per app and endpoint (full: 3)")
    parser.add_argument("--seconds", type=float, help="seconds per measured window (full: 8)")
    parser.add_argument(
        "--warmup", type=float, help="unmeasured seconds before each window (full: 3)"
    )
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--timeout", type=float, default=10.0, help="request timeout, seconds")
    parser.add_argument("--slow-ms", type=int, default=1000, help="a request slower is a stall")
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--endpoints",
        default=",".join(endpoint.key for endpoint in ENDPOINTS),
        help="comma-separated subset to load: " + ", ".join(e.key for e in ENDPOINTS),
    )
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument("--tasks-per-project", type=int, default=5)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
        help="a PostgreSQL URL allowed to CREATE DATABASE (env BENCH_ADMIN_URL)",
    )
    parser.add_argument(
        "--vcs-ref",
        default="HEAD",
        help="template revision to render (HEAD includes uncommitted changes)",
    )
    parser.add_argument(
        "--previous-ref",
        metavar="REF",
        default=TODAY_REF,
        help="also render the template at REF and measure it beside, in place of the "
        "pre-ping server (default: today's render, main at 2a4d14c before the kit, which "
        "issue 24's second target holds the service against; '' for none)",
    )
    parser.add_argument(
        "--layers-rounds",
        type=int,
        help="rounds of the in-process measurement (bench/layers.py; full: 5, quick: 1)",
    )
    parser.add_argument(
        "--price-rounds", type=int, help="rounds of the price table over HTTP (full: 3, quick: 1)"
    )
    parser.add_argument(
        "--scale-rounds", type=int, help="rounds of the scale table over HTTP (full: 2, quick: 1)"
    )
    parser.add_argument(
        "--no-prices",
        dest="prices",
        action="store_false",
        help="leave out the price and scale tables (PgBouncer, replica, renders with options)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for both service apps, e.g. DB_POOL_SIZE=40 (repeatable)",
    )
    parser.add_argument(
        "--service-dir",
        type=Path,
        help="benchmark this rendered (perhaps edited) project instead of rendering one",
    )
    profile = parser.add_mutually_exclusive_group()
    profile.add_argument("--profile", dest="profile", action="store_true", default=None)
    profile.add_argument("--no-profile", dest="profile", action="store_false")
    parser.add_argument("--out", type=Path, help="directory for benchmarks.md and .json")
    parser.add_argument(
        "--instructions",
        type=int,
        help="requests per app and endpoint counted under callgrind (full: 100, quick: 10; "
        "0: none)",
    )
    parser.add_argument(
        "--http-anchors",
        default=",".join(ANCHOR_LABELS),
        help="hand-written apps (bench/orm_apps.py) also served by uvicorn, counted on the "
        "wire and loaded as the service is; '' for none",
    )
    parser.add_argument(
        "--other-runs",
        type=Path,
        nargs="*",
        default=[],
        metavar="JSON",
        help="benchmarks.json of the same template run on other machines: issue 24's targets "
        "judge the median of every run's paired in-process ratio",
    )
    args = parser.parse_args()
    full = {"rounds": 3, "seconds": 8.0, "warmup": 3.0, "profile": True, "instructions": 100}
    full |= {"price_rounds": 3, "scale_rounds": 2}
    quick = {"rounds": 1, "seconds": 3.0, "warmup": 1.0, "profile": False, "instructions": 10}
    quick |= {"price_rounds": 1, "scale_rounds": 1}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    keys = set(args.endpoints.split(","))
    args.selected = [endpoint for endpoint in ENDPOINTS if endpoint.key in keys]
    if not args.selected or keys - {endpoint.key for endpoint in ENDPOINTS}:
        parser.error(f"--endpoints: choose among {', '.join(e.key for e in ENDPOINTS)}")
    args.http_anchors = tuple(name for name in args.http_anchors.split(",") if name)
    if set(args.http_anchors) - set(ANCHOR_LABELS):
        parser.error(f"--http-anchors: choose among {', '.join(ANCHOR_LABELS)}")
    if any("=" not in item for item in args.service_env):
        parser.error("--service-env takes NAME=VALUE")
    args.service_env = dict(item.split("=", 1) for item in args.service_env)
    if args.out is None:
        args.out = BENCH_DIR / "results" if args.quick else REPO_DIR / "docs"
    return args


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Urls:
    """The database URLs each app is given, built from the admin URL's server."""

    def __init__(self, admin_url: str, database: str, user: str | None = None) -> None:
        parts = urlsplit(admin_url)
        self.user = user or parts.username or "postgres"
        self.password = None if user else parts.password
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432
        self.database = database

    def _auth(self) -> str:
        return self.user + (f":{self.password}" if self.password else "")

    def sqlalchemy(self, port: int | None = None, host: str | None = None) -> str:
        where = f"{host or self.host}:{port or self.port}"
        return f"postgresql+asyncpg://{self._auth()}@{where}/{self.database}?ssl=disable"

    def plain(self, port: int | None = None, host: str | None = None) -> str:
        where = f"{host or self.host}:{port or self.port}"
        return f"postgresql://{self._auth()}@{where}/{self.database}?sslmode=disable"


def clean_env() -> dict[str, str]:
    """This process's environment without any setting the benchmark must choose."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("DB_", "FLOOR_")) and not key.startswith(_SERVICE_VARIABLES)
    }


def service_base_env(
    urls: Urls,
    secret: str,
    db_port: int | None = None,
    db_host: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The service as production runs it: every setting at its default but these."""
    return {
        **clean_env(),
        "ENVIRONMENT": "production",
        "CURSOR_SECRET": secret,
        "DATABASE_URL": urls.sqlalchemy(db_port, db_host),
        **(extra_env or {}),
    }


def make_apps(
    service: prepare.Service,
    venv: Path,
    urls: Urls,
    logs: Path,
    phase: str,
    secret: str,
    db_port: int | None = None,
    db_host: str | None = None,
    extra_env: dict[str, str] | None = None,
    previous: prepare.Service | None = None,
    anchors: tuple[str, ...] = (),
) -> dict[str, App]:
    """The processes: the service as production runs it, the floor, and either the same
    service with pre-ping on or, when there is one, the previous render as production runs
    it (not both: four pools of up to 40 would pass PostgreSQL's 100 connections)."""
    base = clean_env()
    uvicorn = str(venv / "bin" / "uvicorn")
    service_env = service_base_env(urls, secret, db_port, db_host, extra_env)
    apps: dict[str, App] = {}
    renders = [(SERVICE, "service (its default settings)", {}, service)]
    if previous is None:
        renders.append(
            (PING, "service, DB_POOL_PRE_PING=true", {"DB_POOL_PRE_PING": "true"}, service)
        )
    else:
        renders.append((PREVIOUS, "previous render (its default settings)", {}, previous))
    for name, label, extra, render in renders:
        port = free_port()
        apps[name] = App(
            name=name,
            label=label,
            argv=service_argv(venv, render.package, port),
            env={**service_env, **extra},
            cwd=render.directory,
            port=port,
            ready_path="/health/ready",
            log_path=logs / f"{phase}-{name}.log",
        )
    for name in anchors:
        port = free_port()
        apps[name] = App(
            name=name,
            label=ANCHOR_LABELS[name],
            argv=[
                uvicorn,
                "orm_server:app",
                "--app-dir",
                str(BENCH_DIR),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
            ],
            env={
                **base,
                "ORM_APP": name,
                "SERVICE_PACKAGE": service.package,
                "CURSOR_SECRET": secret,
                "DATABASE_URL": urls.sqlalchemy(db_port, db_host),
            },
            cwd=BENCH_DIR,
            port=port,
            ready_path="/health",
            log_path=logs / f"{phase}-{name}.log",
        )
    port = free_port()
    apps[FLOOR] = App(
        name=FLOOR,
        label="floor (Starlette + asyncpg + orjson)",
        argv=[
            uvicorn,
            "floor_app:app",
            "--app-dir",
            str(BENCH_DIR),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
        ],
        env={
            **base,
            "CURSOR_SECRET": secret,
            "FLOOR_DATABASE_URL": urls.plain(db_port, db_host),
            "FLOOR_POOL_IDLE_SECONDS": "2",
        },
        cwd=BENCH_DIR,
        port=port,
        ready_path="/health",
        log_path=logs / f"{phase}-{FLOOR}.log",
    )
    return apps


# The hand-written apps of bench/orm_apps.py served by uvicorn (bench/orm_server.py), to
# hold the service against over HTTP and on the wire as well as in process (issue 24).
ANCHOR_LABELS = {
    "fastapi_orm": "leanest FastAPI + ORM app",
    "fastapi_orm_features": "leanest app with the service's features",
    "usual": "usual template pattern",
    "s3rius": "in the style of s3rius/FastAPI-template",
    "fullstack": "in the style of full-stack-fastapi-template (sync)",
    "benavlabs": "in the style of benavlabs/FastAPI-boilerplate (FastCRUD)",
}


def start_all(apps: dict[str, App]) -> None:
    for app in apps.values():
        app.start()
    for app in apps.values():
        app.wait_ready()


def stop_all(apps: dict[str, App]) -> None:
    for app in apps.values():
        app.stop()


@contextmanager
def running(app: App) -> Iterator[App]:
    """`app` started and ready inside the block, stopped after it."""
    app.start()
    try:
        app.wait_ready()
        yield app
    finally:
        app.stop()


def load_settings(args: argparse.Namespace, python: Path) -> load.Settings:
    """How every load of this run is driven; `python` runs pyload.py when wrk is absent."""
    return load.Settings(
        loader=args.loader,
        connections=args.connections,
        threads=args.threads,
        timeout_s=args.timeout,
        slow_ms=args.slow_ms,
        python=str(python),
    )


def count_phase(
    service: prepare.Service,
    venv: Path,
    urls: Urls,
    work: Path,
    ids: list[str],
    secret: str,
    extra_env: dict[str, str],
    previous: prepare.Service | None,
    anchors: tuple[str, ...] = (),
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, object]]]:
    """Round trips and statements per request through the wire counter; the shapes check."""
    counter = WireCounter(urls.host, urls.port)
    relay_port = counter.start()
    logs = work / "logs"
    apps = make_apps(
        service,
        venv,
        urls,
        logs,
        "count",
        secret,
        relay_port,
        "127.0.0.1",
        extra_env,
        previous,
        anchors,
    )
    results: dict[str, dict[str, Any]] = {}
    shapes: dict[str, dict[str, object]] = {}
    try:
        start_all(apps)
        for name, app in apps.items():
            workloads = {
                "get": counting.gets(endpoints.read_paths("get", ids)),
                "list_offset": counting.gets(endpoints.read_paths("list_offset", ids)),
                "list_cursor": counting.gets(endpoints.cursor_paths(app.port)),
                "with_tasks": counting.gets(endpoints.read_paths("with_tasks", ids)),
                "create": counting.creates(f"load-count-{name.replace('_', '-')}"),
                "with_tasks_5": counting.gets(endpoints.read_paths("with_tasks", ids, 5)),
                "with_tasks_50": counting.gets(endpoints.read_paths("with_tasks", ids, 50)),
            }
            for key, requests in workloads.items():
                counted = counting.measure(counter, app.port, requests, warmup=10, n=40)
                results.setdefault(key, {})[name] = counted.as_dict()
            say(
                f"counted {name}: "
                + ", ".join(f"{k} {v[name]['round_trips']:g} rt" for k, v in results.items())
            )
        shapes = counting.compare_shapes(apps[SERVICE].port, apps[FLOOR].port, ids[0], "load-shape")
    finally:
        stop_all(apps)
        counter.stop()
    return results, shapes


def load_phase(
    args: argparse.Namespace,
    service: prepare.Service,
    venv: Path,
    urls: Urls,
    work: Path,
    ids: list[str],
    secret: str,
    previous: prepare.Service | None,
) -> tuple[list[Window], dict[str, Any]]:
    python = venv / "bin" / "python"
    settings = load_settings(args, python)
    apps = make_apps(
        service,
        venv,
        urls,
        work / "logs",
        "load",
        secret,
        extra_env=args.service_env,
        previous=previous,
        anchors=args.http_anchors,
    )
    paths_dir = work / "paths"
    paths_dir.mkdir(exist_ok=True)
    windows: list[Window] = []
    profiles: dict[str, Any] = {}

    def cleanup() -> None:
        prepare.dbtool(python, "cleanup", "--url", urls.plain(), "--slug-prefix", "load-")

    shared = {
        key: endpoints.write_paths(paths_dir, key, endpoints.read_paths(key, ids))
        for key in ("get", "list_offset", "with_tasks")
    }
    cursor_files: dict[str, Path] = {}

    def workload(endpoint: str, app: str, tag: str) -> load.Workload:
        if endpoint == "create":
            return load.Workload("create", f"load-{tag}-{app.replace('_', '-')}")
        if endpoint == "list_cursor":
            return load.Workload("paths", str(cursor_files[app]))
        return load.Workload("paths", str(shared[endpoint]))

    try:
        # One server at a time: each holds its pools' connections for as long as it runs,
        # and two services of up to 40 each next to the floor would pass PostgreSQL's 100.
        for name, app in apps.items():
            with running(app):
                paths = endpoints.cursor_paths(app.port)
                cursor_files[name] = endpoints.write_paths(paths_dir, f"list_cursor_{name}", paths)

        say(f"each window: a fresh server, {args.warmup:g} s of the same load unmeasured first")
        order = list(apps)
        for number in range(1, args.rounds + 1):
            for endpoint in args.selected:
                for name in order:
                    app = apps[name]
                    with running(app):
                        pair = (
                            workload(endpoint.key, name, f"p{number}"),
                            workload(endpoint.key, name, f"r{number}"),
                        )
                        measured = measure.window(
                            app, pair, settings, urls.database, args.seconds, args.warmup
                        )
                    result, spent = measured.load, measured.server_cpu_s
                    windows.append(
                        Window(
                            endpoint.key,
                            name,
                            number,
                            result,
                            spent,
                            measured.pg_cpu_s,
                            measured.pg_new_backends,
                        )
                    )
                    say(
                        f"round {number} {endpoint.key:<11} {name:<20} {result.rps:8.0f} req/s "
                        f"p99 {result.p99_ms:7.1f} ms  cpu {1000 * spent / max(result.requests, 1):.3f}"
                        f" ms/req  errors {sum(result.errors.values())}"
                    )
                if endpoint.key == "create":
                    cleanup()
            order = order[1:] + order[:1]  # rotate, so no app always follows the same one

        if args.profile:
            py_spy = str(venv / "bin" / "py-spy")
            service_app = apps[SERVICE]
            profiled = ("get", "list_offset", "with_tasks", "create")
            for key in (e.key for e in args.selected if e.key in profiled):
                raw = work / f"profile-{key}.txt"
                seconds = max(4, int(args.seconds))
                with running(service_app):
                    load.run(
                        service_app.port, workload(key, SERVICE, "prof"), args.warmup, settings
                    )
                    spy = profiler.start(py_spy, service_app.pid, seconds, raw)
                    time.sleep(0.5)
                    load.run(
                        service_app.port, workload(key, SERVICE, "prof"), seconds + 1, settings
                    )
                    if spy.wait(timeout=60) != 0 or not raw.exists():
                        say(f"py-spy could not sample {key} (it needs ptrace rights); skipped")
                        continue
                profiles[key] = profiler.summarise(raw, service.package).as_dict()
                say(f"profiled {key}: {profiles[key]['samples']} samples")
            cleanup()
    finally:
        stop_all(apps)
    return windows, profiles


def in_process_env(urls: Urls, secret: str, **extra: str) -> dict[str, str]:
    """The environment of a bench/layers.py run: the service in production, the floor's
    plain URL beside it, and quiet logs."""
    return {
        **os.environ,
        "ENVIRONMENT": "production",
        "CURSOR_SECRET": secret,
        "DATABASE_URL": urls.sqlalchemy(),
        "FLOOR_DATABASE_URL": urls.plain(),
        "LOG_LEVEL": "WARNING",
        **extra,
    }


def layers_argv(python: Path, service: prepare.Service, ids_file: Path, out: Path) -> list[str]:
    """bench/layers.py on the service's package, the seeded ids and the load's slugs."""
    argv = [str(python), str(BENCH_DIR / "layers.py"), "--package", service.package]
    return argv + ["--ids", str(ids_file), "--out", str(out), "--slug-prefix", "load-"]


def json_check_phase(
    python: Path,
    service: prepare.Service,
    urls: Urls,
    ids_file: Path,
    work: Path,
    secret: str,
    previous: prepare.Service | None,
) -> dict[str, Any]:
    """Every anchor sent the service's requests in process (`layers.py --check-json`),
    before anything is measured: an anchor that raises on this render, or answers other
    JSON, is left out of every phase, and the report says why."""
    out = work / "json-check.json"
    anchors = [*ANCHOR_LABELS, "floor", *(["previous"] if previous else [])]
    argv = [*layers_argv(python, service, ids_file, out), "--check-json"]
    argv += ["--apps", ",".join([*anchors, "service"])]
    if previous is not None:
        argv += ["--previous-package", previous.package]
    env = in_process_env(urls, secret)
    subprocess.run(argv, cwd=service.directory, env=env, capture_output=True, check=False)
    if not out.exists():
        raise SystemExit(f"the JSON check wrote nothing: {' '.join(argv)}")
    checked: dict[str, Any] = json.loads(out.read_text())["same_json"]
    left_out: dict[str, str] = {}
    for name, checks in checked.items():
        errors = [c["error"] for c in checks.values() if "error" in c]
        differ = [key for key, c in checks.items() if not c["identical"]]
        if errors:
            left_out[name] = f"raises on this render: {errors[0]}"
        elif differ:
            left_out[name] = f"answers other JSON than the service for {', '.join(differ)}"
    for name, why in left_out.items():
        say(f"left out: {name} {why}")
    return {"same_json": checked, "left_out": left_out}


def layers_phase(
    args: argparse.Namespace,
    python: Path,
    service: prepare.Service,
    urls: Urls,
    ids_file: Path,
    work: Path,
    secret: str,
    previous: prepare.Service | None,
) -> dict[str, Any]:
    """What each layer of the stack costs, in one process (bench/layers.py)."""
    out = work / "layers.json"
    env = in_process_env(urls, secret)
    size = ["--n", "1000", "--rounds", "1", "--warmup", "300"] if args.quick else []
    if args.layers_rounds:
        size += ["--rounds", str(args.layers_rounds)]
    argv = [*layers_argv(python, service, ids_file, out), *size]
    if previous is not None:
        argv += ["--previous-package", previous.package]
    prepare.run(argv, cwd=service.directory, env=env)
    layers: dict[str, Any] = json.loads(out.read_text())
    get = layers["cpu_ms"]["get"]
    say(
        "layers (get, ms/req in process): "
        + ", ".join(f"{name} {value:.3f}" for name, value in get.items())
    )
    for other in ("lean", "features", "usual", "s3rius", "fullstack", "previous"):
        for key, ratio in layers.get(f"against_{other}", {}).items():
            say(
                f"layers {key}: service / {other} {ratio['cpu']:.3f} (by round {ratio['by_round']})"
            )
    for name, checks in layers.get("same_json", {}).items():
        differ = [key for key, check in checks.items() if not check["identical"]]
        say(
            f"layers: {name} "
            + (f"answers OTHER JSON for {differ}" if differ else "answers the service's JSON")
        )
    return layers


def instructions_phase(
    args: argparse.Namespace,
    python: Path,
    service: prepare.Service,
    urls: Urls,
    ids_file: Path,
    work: Path,
    secret: str,
    previous: prepare.Service | None,
    left_out: dict[str, str],
) -> dict[str, Any]:
    """Machine instructions per request, in process under callgrind (bench/layers.py
    --instructions, bench/instructions.py): the measure issue 24's targets judge, since
    it does not depend on the machine. Empty when Valgrind is not installed."""
    valgrind = shutil.which("valgrind")
    if valgrind is None or args.instructions <= 0:
        say("instructions: not counted (no valgrind on PATH, or --instructions 0)")
        return {}
    dumps = work / "callgrind"
    shutil.rmtree(dumps, ignore_errors=True)
    dumps.mkdir(parents=True)
    out = work / "instructions.json"
    # PYTHONHASHSEED: the same dict and set layouts in every run.
    env = in_process_env(urls, secret, CALLGRIND_DIR=str(dumps), PYTHONHASHSEED="0")
    apps = ["floor", *ANCHOR_LABELS, "service"]
    apps = [name for name in apps if name not in left_out]
    argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={dumps}/cg.%p"]
    argv += layers_argv(python, service, ids_file, out)
    argv += ["--instructions", str(args.instructions)]
    if previous is not None:
        argv += ["--previous-package", previous.package]
        apps.append("previous")
    argv += ["--apps", ",".join(apps)]
    started = time.monotonic()
    prepare.run(argv, cwd=service.directory, env=env)
    counted: dict[str, Any] = json.loads(out.read_text())
    per_request = counted["instructions"]
    say(f"instructions counted under callgrind in {time.monotonic() - started:.0f} s")
    for key, by_app in per_request.items():
        say(f"instructions {key}: " + ", ".join(f"{a} {v:,.0f}" for a, v in by_app.items()))
    return {
        "instructions": per_request,
        "instructions_requests": args.instructions,
        "instructions_against": {
            other: {
                key: round(by_app["service"] / by_app[other], 4)
                for key, by_app in per_request.items()
                if by_app.get(other) and "service" in by_app
            }
            for other in (*ANCHOR_LABELS, "floor", "previous")
        },
    }


# The renders the price table needs beside the default: each option's own names, so
# that all of them install into one venv on the same libraries.
PRICE_RENDERS = {
    "cache": {"project_name": "Price Cache", "project_slug": "price-cache", "cache": "true"},
    "traces": {"project_name": "Price Traces", "project_slug": "price-traces", "tracing": "true"},
}


def prices_phase(
    args: argparse.Namespace,
    renders: dict[str, prepare.Service],
    venvs: dict[str, Path],
    urls: Urls,
    work: Path,
    secret: str,
) -> dict[str, Any]:
    """The price table (harness/prices.PRICES) and the scale table (SCALE), over HTTP."""
    python = venvs["oldest"] / "bin" / "python"
    settings = load_settings(args, python)
    paths_dir = work / "paths"
    paths_dir.mkdir(exist_ok=True)
    sample = (work / "ids.txt").read_text(encoding="utf-8").split()
    every = (work / "ids.all.txt").read_text(encoding="utf-8").split()
    phase = prices.Phase(
        services=renders,
        venvs=venvs,
        base_env=service_base_env(urls, secret, extra_env=args.service_env),
        database=urls.database,
        paths={
            "get": endpoints.write_paths(paths_dir, "get", endpoints.read_paths("get", sample)),
            "get_all": endpoints.write_paths(
                paths_dir, "get_all", endpoints.read_paths("get", every)
            ),
        },
        settings=settings,
        logs=work / "logs",
        seconds=args.seconds,
        warmup=args.warmup,
        say=say,
        free_port=free_port,
        cleanup=lambda: prepare.dbtool(
            python, "cleanup", "--url", urls.plain(), "--slug-prefix", "load-"
        ),
    )
    try:
        with prices.servers(urls.sqlalchemy, prices.PRICES) as found:
            say("prices: a PgBouncer and a streaming replica are up")
            priced = prices.run(phase, prices.PRICES, args.price_rounds, found)
        scaled = prices.run(phase, prices.SCALE, args.scale_rounds, prices.Servers(urls.sqlalchemy))
    finally:
        prices.forget_cache(python)
    return {"prices": priced, "scale": scaled}


def main() -> None:
    args = parse_args()
    args.loader = load.choose_loader(args.loader)
    work = BENCH_DIR / "results" / "work"
    shutil.rmtree(work / "logs", ignore_errors=True)  # logs of this run only
    (work / "logs").mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)

    if args.service_dir:
        service = prepare.describe(args.service_dir.resolve())
        say(f"using the project in {service.directory}")
    else:
        service = prepare.render(work / "service", args.vcs_ref)
        say(f"rendered the default service into {service.directory}")
    previous = None
    if args.previous_ref:  # today's render unless told otherwise
        previous = prepare.render_previous(work / "previous", args.previous_ref)
        say(f"rendered the template at {args.previous_ref} into {previous.directory}")
    renders = {"default": service}
    if args.prices:
        for name, answers in PRICE_RENDERS.items():
            renders[name] = prepare.render(work / f"price-{name}", args.vcs_ref, answers)
    beside = [*([previous] if previous else []), *list(renders.values())[1:]]
    venv = BENCH_DIR / ".venv"
    python = prepare.ensure_venv(venv, service, *beside)
    say(f"installed {', '.join([service.package, *(s.package for s in beside)])} into {venv}")
    venvs = {"oldest": venv}
    if args.prices:
        version, interpreter = prepare.newest_python()
        venvs["newest"] = BENCH_DIR / f".venv-{version}"
        prepare.ensure_venv(venvs["newest"], service, interpreter=interpreter)
        say(f"installed {service.package} into {venvs['newest']} (Python {version})")

    database = f"bench_{started_at:%Y%m%d%H%M%S}_{os.getpid()}"
    urls = Urls(args.admin_url, database)
    chores = urls  # the owner's: VACUUM and the cleanups between phases
    secret = secrets.token_urlsafe(32)
    prepare.dbtool(python, "create", "--admin-url", args.admin_url, "--name", database)
    try:
        prepare.migrate(venv, service, urls.sqlalchemy())
        if previous is not None:
            found = prepare.check_schema(
                venv, previous, args.admin_url, f"{database}_previous", urls.sqlalchemy()
            )
            say(
                f"the previous render finds its schema ({previous.package}: alembic check on "
                f"its own migrations, every column and index of theirs here; beside them: "
                f"{', '.join(found['extra']) or 'nothing'}; server defaults differ: "
                f"{', '.join(found['defaults_differ']) or 'none'})"
            )
        ids_file = work / "ids.txt"
        seeded = prepare.seed(
            python, service, urls.sqlalchemy(), args.projects, args.tasks_per_project, ids_file
        )
        prepare.dbtool(python, "vacuum", "--url", urls.plain())
        ids = ids_file.read_text(encoding="utf-8").split()
        say(f"database {database}: migrated, seeded {seeded}")
        versions = prepare.dbtool(python, "versions", "--url", urls.plain())
        # From here every app connects as a role that reads and writes rows only: the
        # service in production refuses a superuser, and the anchors get the same role.
        made = prepare.dbtool(python, "role", "--admin-url", args.admin_url, "--name", database)
        urls = Urls(args.admin_url, database, user=str(made["role"]))
        say(f"the apps connect as {made['role']}")

        checked = json_check_phase(python, service, urls, ids_file, work, secret, previous)
        left_out = checked["left_out"]
        prepare.dbtool(python, "cleanup", "--url", chores.plain(), "--slug-prefix", "load-")
        args.http_anchors = tuple(name for name in args.http_anchors if name not in left_out)
        counts, shapes = count_phase(
            service, venv, urls, work, ids, secret, args.service_env, previous, args.http_anchors
        )
        prepare.dbtool(python, "cleanup", "--url", chores.plain(), "--slug-prefix", "load-")
        differ = [key for key, value in shapes.items() if not value["identical"]]
        say("same JSON from both apps" if not differ else f"JSON DIFFERS for {differ}")

        windows, profiles = load_phase(args, service, venv, urls, work, ids, secret, previous)
        layers = layers_phase(args, python, service, urls, ids_file, work, secret, previous)
        layers |= instructions_phase(
            args, python, service, urls, ids_file, work, secret, previous, left_out
        )
        layers["left_out"] = left_out
        prepare.dbtool(python, "cleanup", "--url", chores.plain(), "--slug-prefix", "load-")
        priced: dict[str, Any] = {}
        if args.prices:
            priced = prices_phase(args, renders, venvs, urls, work, secret)
    finally:
        prepare.dbtool(python, "drop", "--admin-url", args.admin_url, "--name", database)
        say(f"dropped {database}")

    # 503s the service answered because it could not get a connection (the log says why
    # not; PostgreSQL's own log does, e.g. "too many clients already").
    unavailable = {
        name: log.read_text(errors="replace").count("database unavailable")
        for name in (SERVICE, PING, PREVIOUS)
        if (log := work / "logs" / f"load-{name}.log").exists()
    }
    summary = figures.summarise(windows)
    service_ratios = figures.ratios(summary, counts, SERVICE)
    others = [json.loads(path.read_text(encoding="utf-8")) for path in args.other_runs]
    checks = figures.targets(
        summary, service_ratios, counts, args.slow_ms, layers, others, args.previous_ref
    )
    results: dict[str, Any] = {
        "meta": {
            "started": started_at.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": prepare.machine(),
            "versions": {**versions["versions"], "wrk": load.wrk_version()},  # type: ignore[dict-item]
            "postgres_settings": versions["postgres_settings"],
            "template": prepare.template_revision(),
            "python_versions": {
                name: prepare.run(
                    [
                        str(v / "bin" / "python"),
                        "-c",
                        "import platform; print(platform.python_version())",
                    ]
                ).strip()
                for name, v in venvs.items()
            },
            "database_unavailable_responses": unavailable,
            "loader": args.loader,
            "seed": seeded,
            "run": {
                "mode": "quick" if args.quick else "full",
                "rounds": args.rounds,
                "seconds": args.seconds,
                "warmup": args.warmup,
                "connections": args.connections,
                "threads": args.threads,
                "timeout_s": args.timeout,
                "slow_ms": args.slow_ms,
                "duration_s": time.monotonic() - _started,
                "service_dir": str(args.service_dir) if args.service_dir else None,
                "service_env": args.service_env,
                "price_rounds": args.price_rounds if args.prices else 0,
                "scale_rounds": args.scale_rounds if args.prices else 0,
                "previous_ref": args.previous_ref,
                "other_runs": [str(path) for path in args.other_runs],
            },
        },
        "summary": summary,
        "ratios": {
            SERVICE: service_ratios,
            PING: figures.ratios(summary, counts, PING),
            PREVIOUS: figures.ratios(summary, counts, PREVIOUS),
        },
        "against_previous": figures.against_previous(summary, counts, layers),
        "against_anchors_http": figures.against_anchors(summary, counts, args.http_anchors),
        "targets": checks,
        "verdict": figures.verdict(checks, counts, args.previous_ref),
        "counts": counts,
        "shapes": shapes,
        "profile": profiles,
        "layers": layers,
        "prices": priced.get("prices"),
        "scale": priced.get("scale"),
        "windows": [window.as_dict() for window in windows],
    }
    report.write(results, args.out / "benchmarks.md", args.out / "benchmarks.json")
    for check in results["targets"]:
        say(f"{'pass' if check['passed'] else 'FAIL'}  {check['check']}: {check['value']}")
    say(f"wrote {args.out / 'benchmarks.md'} and {args.out / 'benchmarks.json'}")
    print(json.dumps({k: v["cpu"] for k, v in service_ratios.items()}))


if __name__ == "__main__":
    main()
