"""The soak: the default service for an hour under mixed load while its connections are cut.

    python bench/soak.py                                   # 60 minutes -> bench/results/soak.*
    python bench/soak.py --minutes 6 --sweep-seconds 60    # a shortened run
    python bench/soak.py --publish                         # and docs/soak.md

It renders the default service from this working tree, installs it in bench/.venv,
creates its own database (dropped at the end), migrates and seeds it, builds a
streaming replica (tests/harness/replica.py) and starts a PgBouncer in transaction
mode (tests/harness/pgbouncer.py), and runs the service as production does: uvicorn
with two workers, writes through PgBouncer, reads on the replica (DB_REPLICA_URLS).
Then 32 clients create, update (with the version they last saw), delete, get and list
projects for `--minutes`, while every `--sweep-seconds` every client backend of the
database is terminated on the primary and on the replica. Afterwards it checks that no
acknowledged write was lost, that every 5xx fell during a sweep, that the workers'
memory did not grow and that p99 latency held, writes bench/results/soak.json and .md,
and exits non-zero if a check failed. What it checks and why: bench/README.md.
"""

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import time
from contextlib import ExitStack
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg
import pytest
from harness import prepare, soak_api, soak_load, soak_report
from harness.procs import App, descendants, service_argv, tree_cpu_seconds
from harness.soak_watch import MemorySampler, Sweeper
from run import Urls, clean_env, free_port

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
if str(REPO_DIR) not in sys.path:
    sys.path.insert(0, str(REPO_DIR))

# The full tier's own PgBouncer and streaming replica, started as its tests start them.
from tests.harness import pgbouncer, replica
from tests.harness.databases import POSTGRES_DSN

_started = time.monotonic()


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="load time (default 60)")
    parser.add_argument(
        "--sweep-seconds",
        type=float,
        default=300.0,
        help="seconds between two sweeps of every backend (default 300)",
    )
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (default 2)")
    parser.add_argument("--think-ms", type=float, default=0.0, help="pause between requests")
    parser.add_argument("--timeout", type=float, default=30.0, help="request timeout, seconds")
    parser.add_argument("--rss-seconds", type=float, default=10.0, help="memory sample period")
    parser.add_argument("--seed-projects", type=int, default=2000)
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", POSTGRES_DSN),
        help="a PostgreSQL URL allowed to CREATE DATABASE (env BENCH_ADMIN_URL); the replica "
        "and PgBouncer follow CFS_POSTGRES_DSN, which should name the same server",
    )
    parser.add_argument("--vcs-ref", default="HEAD", help="template revision to render")
    parser.add_argument("--service-dir", type=Path, help="soak this rendered project instead")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--publish", action="store_true", help="also write docs/soak.md")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="SOAK_JSON",
        help="run nothing: write the reports again from a saved soak.json",
    )
    args = parser.parse_args()
    if args.minutes <= 0 or args.sweep_seconds <= 0 or args.clients < 1 or args.workers < 1:
        parser.error("--minutes, --sweep-seconds, --clients and --workers must be positive")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # the same clean-up as Ctrl-C


def _admin(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement.encode())


def service_app(
    service: prepare.Service,
    venv: Path,
    env: dict[str, str],
    work: Path,
    bound_s: int,
    workers: int,
) -> App:
    """uvicorn as production runs it, with `workers` workers, ended by `timeout` at the
    latest after `bound_s` seconds whatever happens to this process."""
    port = free_port()
    metrics = work / "metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    return App(
        name="service",
        label="the default service",
        argv=[
            *("timeout", "--signal=INT", "--kill-after=30", str(bound_s)),
            *service_argv(venv, service.package, port),
        ],
        env={**env, "WEB_CONCURRENCY": str(workers), "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
        cwd=service.directory,
        port=port,
        ready_path=soak_api.READY,
        log_path=work / "service.log",
    )


def stop(app: App) -> None:
    """uvicorn's graceful stop; then whatever of its processes is left is killed."""
    left = descendants(app.pid) if app.process is not None else []
    app.stop()
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def rows_of(url: str, prefix: str) -> dict[str, tuple[str, soak_api.State]]:
    """Every project the run's clients may have written, read on the primary directly."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        found = conn.execute(soak_api.ROWS_QUERY, [prefix + "-%"]).fetchall()
    out = {}
    for row in found:
        key, state = soak_api.row_state(row)
        out[state.slug] = (key, state)
    return out


def log_errors(log: Path, limit: int = 40) -> dict[str, Any]:
    """The service's log lines at ERROR or above, and exception lines, counted by message."""
    counts: dict[str, int] = {}
    if log.exists():
        for line in log.read_text(errors="replace").splitlines():
            if re.search(r"\b(ERROR|CRITICAL)\b|Error:|Exception:", line):
                message = re.sub(r"\[[0-9a-f-]{6,}\]", "[request]", line)  # request ids
                message = re.sub(r"\d[\d:.,T-]+|0x[0-9a-f]+|\b\d+\b", "#", message)[:240]
                counts[message] = counts.get(message, 0) + 1
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    return {"lines": sum(counts.values()), "top": ranked[:limit]}


def main() -> int:
    args = parse_args()
    if args.from_json:
        return reports(json.loads(args.from_json.read_text(encoding="utf-8")), args)
    signal.signal(signal.SIGTERM, _terminate)
    total_s = args.minutes * 60
    window_s = min(600.0, total_s / 6)  # a 60-minute run: six windows of 10 minutes
    work = args.out / "soak-work"
    work.mkdir(parents=True, exist_ok=True)
    started_at = datetime.now(UTC)

    if args.service_dir:
        service = prepare.describe(args.service_dir.resolve())
    else:
        service = prepare.render(work / "service", args.vcs_ref)
        say(f"rendered the default service into {service.directory}")
    venv = BENCH_DIR / ".venv"
    python = prepare.ensure_venv(venv, service)
    say(f"installed {service.package} into {venv}")

    database = f"soak_{started_at:%Y%m%d%H%M%S}_{os.getpid()}"
    urls = Urls(args.admin_url, database)
    prefix = f"soak-{secrets.token_hex(3)}"
    bound_s = int(total_s + 900)  # every server ends by itself after this, at the latest
    results: dict[str, Any] = {}
    _admin(args.admin_url, f'CREATE DATABASE "{database}"')
    try:
        with ExitStack() as stack:
            prepare.migrate(venv, service, urls.sqlalchemy())
            ids_file = work / "ids.txt"
            seeded = prepare.seed(
                python, service, urls.sqlalchemy(), args.seed_projects, 2, ids_file
            )
            say(f"database {database}: migrated, seeded {seeded}")
            # The service connects as a role that reads and writes rows only: production
            # refuses a superuser (README, "Database roles").
            made = prepare.dbtool(python, "role", "--admin-url", args.admin_url, "--name", database)
            urls = Urls(args.admin_url, database, user=str(made["role"]))
            standby = stack.enter_context(replica.replica(lifetime=bound_s))
            bouncer = stack.enter_context(pgbouncer.pgbouncer(lifetime=bound_s))
            say(f"replica on port {standby.port}, PgBouncer on port {bouncer.port}")
            env = {
                **clean_env(),
                "ENVIRONMENT": "production",
                "CURSOR_SECRET": secrets.token_urlsafe(32),
                "DATABASE_URL": urls.sqlalchemy(bouncer.port, "127.0.0.1"),
                "DATABASE_DIRECT_URL": urls.sqlalchemy(),
                "DB_BEHIND_PGBOUNCER": "true",
                "DB_REPLICA_URLS": urls.sqlalchemy(standby.port, "127.0.0.1"),
            }
            app = service_app(service, venv, env, work, bound_s, args.workers)
            app.start()
            stack.callback(stop, app)
            app.wait_ready(timeout=120)
            say(f"service up on port {app.port} ({args.workers} workers)")

            loadavg_start = [round(x, 1) for x in os.getloadavg()]
            t0 = time.monotonic()
            clients_cpu = time.process_time()
            sampler = MemorySampler(app.pid, args.rss_seconds, t0)
            servers = {"primary": args.admin_url, "replica": standby.dsn("postgres")}
            sweeper = Sweeper(servers, database, args.sweep_seconds, t0, until=total_s - 5)
            sampler.start()
            sweeper.start()
            stack.callback(sampler.stop)
            stack.callback(sweeper.stop)
            run = soak_load.Run(
                app.port,
                total_s,
                window_s,
                ids_file.read_text(encoding="utf-8").split(),
                prefix,
                args.timeout,
                args.think_ms / 1000,
                t0,
            )
            say(
                f"{args.clients} clients for {args.minutes:g} min, sweeps every "
                f"{args.sweep_seconds:g} s, windows of {window_s:g} s"
            )
            loaded = asyncio.run(soak_load.drive(run, args.clients))
            sweeper.stop()
            sampler.tick()  # one last sample at the end of the load
            sampler.stop()
            cpu = {
                "service": round(tree_cpu_seconds(app.pid), 1),
                "clients": round(time.process_time() - clients_cpu, 1),
            }
            say(f"load done: {loaded.requests} requests, {len(sweeper.sweeps)} sweeps")
            stop(app)
            results = {
                "loaded": loaded,
                "sweeps": sweeper.sweeps,
                "samples": sampler.samples,
                "workers_seen": len(sampler.seen),
            }
        rows = rows_of(urls.plain(), prefix)
        say(f"read back {len(rows)} rows written by the run")
    finally:
        _admin(args.admin_url, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        _admin(args.admin_url, f'DROP ROLE IF EXISTS "{database}_rows"')
        say(f"dropped {database}")

    loaded = results["loaded"]
    verified = soak_report.verify(loaded.ledger, rows)
    classified = soak_report.classify(
        loaded.unexpected, results["sweeps"], verified["committed_by_slug"]
    )
    lat = soak_report.latency(loaded, warmup_windows=1)
    mem = soak_report.memory(results["samples"], window_s, window_s, total_s)
    restarts = max(0, results["workers_seen"] - args.workers)
    checks = soak_report.checks(verified, classified, loaded.unexpected, mem, restarts, lat)
    passed = all(check["passed"] for check in checks)
    report = {
        "meta": {
            "started": started_at.isoformat(timespec="seconds"),
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": prepare.machine(),
            "template": prepare.template_revision(),
            "json_name": "bench/results/soak.json",
            "loadavg_start": loadavg_start,
            "loadavg_end": [round(x, 1) for x in os.getloadavg()],
            "cpu_s": cpu,
            "run": {
                "minutes": args.minutes,
                "sweep_seconds": args.sweep_seconds,
                "clients": args.clients,
                "workers": args.workers,
                "think_ms": args.think_ms,
                "timeout_s": args.timeout,
                "window_s": window_s,
                "warmup_s": window_s,
                "rss_period_s": args.rss_seconds,
                "seed_projects": args.seed_projects,
                "mix": soak_load.MIX,
                "service_dir": str(args.service_dir) if args.service_dir else None,
                "service_log": str(work / "service.log"),
            },
        },
        "verdict": "pass" if passed else "FAIL",
        "checks": checks,
        "requests": loaded.requests,
        "statuses": dict(loaded.statuses),
        "writes": verified,
        "failures": classified,
        "unexpected_other": [
            u.as_dict() for u in loaded.unexpected if u.kind not in ("5xx", "no answer")
        ],
        "latency": lat,
        "memory": mem,
        "workers_seen": results["workers_seen"],
        "sweeps": [{**s.as_dict(), "summary": s.summary()} for s in results["sweeps"]],
        "service_log_errors": log_errors(work / "service.log"),
    }
    return reports(report, args)


def reports(report: dict[str, Any], args: argparse.Namespace) -> int:
    """bench/results/soak.md and .json, with --publish docs/soak.md and .json; the exit code."""
    report["meta"]["json_name"] = "bench/results/soak.json"
    soak_report.write(report, args.out / "soak.md", args.out / "soak.json")
    if args.publish:
        report["meta"]["json_name"] = "docs/soak.json"
        soak_report.write_json(report, REPO_DIR / "docs" / "soak.json")
        soak_report.publish(report, REPO_DIR / "docs" / "soak.md")
    for check in report["checks"]:
        say(f"{'pass' if check['passed'] else 'FAIL'}  {check['check']}: {check['value']}")
    say(f"wrote {args.out / 'soak.md'} and {args.out / 'soak.json'}")
    print(json.dumps({"verdict": report["verdict"]}))
    return 0 if report["verdict"] == "pass" else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        say("interrupted: the servers it started are stopped, its database is dropped")
        sys.exit(130)
    except pytest.fail.Exception as missing:  # the full tier's harness says what is missing
        say(f"cannot run: {missing.msg}")
        sys.exit(2)
