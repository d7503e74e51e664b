"""Full tier: the default service as production runs it, against real servers.

Through a real PgBouncer in transaction mode (Debian's binary, its defaults): the
service's own suite and the kit's (tests/kit/), a uvicorn boot and a short mixed load
with no error. With two
uvicorn workers: each its own pools, request ids unique across them, and the server's
connection count never above the budget the settings give.
"""

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from .conftest import Rendered
from .harness.boot import uvicorn
from .harness.databases import POSTGRES_DSN, check_server, scratch_database, two_roles
from .harness.paths import KIT_TESTS
from .harness.pgbouncer import PgBouncer, pgbouncer
from .harness.run import kit_suite, run, service_suite
from .harness.venv import service_venv

pytestmark = pytest.mark.full

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"  # the server itself, no database
# PgBouncer's server connections for the load (its default is 20), and their states.
SERVER_CONNECTIONS = 3
SERVER_STATES = ("active", "idle", "used", "tested", "login")
# The kit's tests that run at the lowest pins: none of them needs a database, so the run
# costs a second.
LOWEST_PINS_TESTS = tuple(
    KIT_TESTS / name
    for name in (
        "test_routes.py",
        "test_schemas.py",
        "test_middleware.py",
        "test_settings.py",
        "test_secrets.py",  # secret files through pydantic-settings' sources API
    )
)


async def mixed_load(base: str, clients: int, seconds: float) -> Counter[int]:
    """Each client creates a project, reads it, lists a page and renames it, until time's up."""
    statuses: Counter[int] = Counter()
    deadline = time.monotonic() + seconds

    async def client(n: int) -> None:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for i in range(10_000):
                if time.monotonic() > deadline:
                    return
                body = {"name": f"load {n}", "slug": f"load-{n}-{i}"}
                created = await http.post("/api/v1/projects", json=body)
                statuses[created.status_code] += 1
                if created.status_code != 201:
                    continue
                location = created.headers["location"]
                for response in (
                    await http.get(location),
                    await http.get("/api/v1/projects", params={"size": 10}),
                    await http.patch(location, json={"version": 1, "name": "renamed"}),
                ):
                    statuses[response.status_code] += 1

    await asyncio.gather(*(client(n) for n in range(clients)))
    return statuses


def test_the_default_service_behind_pgbouncer(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    rendered = render("default")
    bin_dir = venv_for(rendered)
    kit = render("kit-postgresql")
    env = {"DB_BEHIND_PGBOUNCER": "true", "DATABASE_DIRECT_URL": SERVER}
    with pgbouncer(record=True) as bouncer:
        # Its own suite, and the kit's, every database they create reached through
        # PgBouncer, while DATABASE_DIRECT_URL still names the real server.
        suite, counts = service_suite(bin_dir, rendered.path, bouncer.url("postgres"), env=env)
        assert suite.ok, suite.output[-5000:]
        assert counts.passed > 0 and counts.failed == counts.errors == counts.skipped == 0
        suite, counts = kit_suite(
            venv_for(kit),
            kit.path,
            bouncer.url("postgres"),
            # These point the service at servers and roles this PgBouncer does not serve.
            "-k",
            "not cannot_be_used_as_configured and not bounded_retries",
            env=env,
        )
        assert suite.ok, suite.output[-5000:]
        assert counts.passed > 0 and counts.failed == counts.errors == counts.skipped == 0
    # Served through a PgBouncer with fewer server connections per pool than the service
    # opens to it: what transaction pooling is for.
    with pgbouncer(record=True, default_pool_size=SERVER_CONNECTIONS) as bouncer:
        serve_behind(bouncer, rendered, bin_dir, tmp_path)


def test_the_lowest_pins_behind_pgbouncer(
    render: Callable[[str], Rendered], tmp_path: Path
) -> None:
    """With the lowest version of each dependency the pins allow (`uv --resolution
    lowest-direct`), two workers share PgBouncer's server connections: a driver that
    leaves named prepared statements there fails the other worker's statements. The
    kit's tests of what its web stack does without a database (routes, schemas,
    settings, middleware), and ruff and mypy --strict on the service, pass at those
    versions too: a floor below the behaviour, the API or the rules the service relies
    on fails here."""
    rendered = render("default")
    bin_dir = service_venv(rendered.path, rendered.python_version, "lowest-direct")
    kit = render("kit-postgresql")
    kit_bin = service_venv(kit.path, kit.python_version, "lowest-direct")
    suite, counts = kit_suite(kit_bin, kit.path, f"{SERVER}/postgres", paths=LOWEST_PINS_TESTS)
    assert suite.ok, suite.output[-5000:]
    assert counts.passed > 0 and counts.failed == counts.errors == counts.skipped == 0
    for tool in (
        ("ruff", "check", "--no-cache", "."),
        ("ruff", "format", "--no-cache", "--check", "."),
        ("mypy", "--strict", "--cache-dir", "/dev/null"),
    ):
        checked = run(bin_dir, rendered.path, *tool)
        assert checked.ok, (tool, checked.output[-5000:])
    with pgbouncer(record=True, default_pool_size=SERVER_CONNECTIONS) as bouncer:
        serve_behind(bouncer, rendered, bin_dir, tmp_path)


def serve_behind(bouncer: PgBouncer, rendered: Rendered, bin_dir: Path, tmp_path: Path) -> None:
    """Migrate through `alembic` as the owner, start 3 pods' worth of 2 workers in
    production that serve as the service's role and migrate at start-up as the owner, put
    a mixed load on them: everything through PgBouncer but the session-level work (and
    the owner's), which goes to the server directly."""
    with (
        scratch_database("postgresql", "pgbouncer") as url,
        two_roles(bin_dir, rendered.path, rendered.package, "postgresql", url) as roles,
    ):
        name = url.rsplit("/", 1)[1]
        # The service's role through PgBouncer; on the server itself, its own session
        # (DATABASE_DIRECT_URL) and the owner, which migrates (DATABASE_OWNER_URL).
        service = urlsplit(roles.service)
        through = service._replace(
            netloc=f"{service.netloc.rsplit('@', 1)[0]}@127.0.0.1:{bouncer.port}"
        )
        env = {"DATABASE_URL": urlunsplit(through), "DB_BEHIND_PGBOUNCER": "true"}
        # Without the server's own URL, migrations would run through the pooler.
        refused = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert not refused.ok, refused.output
        assert "DB_BEHIND_PGBOUNCER=true needs DATABASE_DIRECT_URL" in refused.output
        assert "Traceback" not in refused.output, refused.output
        env["DATABASE_DIRECT_URL"] = roles.service
        # Nor may the owner's URL lead through PgBouncer.
        owner = urlsplit(roles.owner)
        pooled = owner._replace(netloc=f"{owner.netloc.rsplit('@', 1)[0]}@127.0.0.1:{bouncer.port}")
        env["DATABASE_OWNER_URL"] = urlunsplit(pooled)
        refused = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert "DATABASE_OWNER_URL leads to PgBouncer" in refused.output, refused.output
        env["DATABASE_OWNER_URL"] = roles.owner
        migrated = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        # Production, 3 pods of 2 workers: the pools are PgBouncer's clients (246 of its
        # 500), the server sees 6 direct connections.
        production = {
            **env,
            "ENVIRONMENT": "production",
            "CURSOR_SECRET": "s" * 32,
            "WEB_CONCURRENCY": "2",
            "DB_PODS": "3",
            "DB_PGBOUNCER_MAX_CLIENT_CONN": "500",
            "MIGRATE_ON_STARTUP": "true",
        }
        log = tmp_path / "uvicorn.log"
        # Two workers importing the app and migrating at start-up on a busy machine.
        with uvicorn(
            bin_dir, rendered.path, rendered.package, production, 90, workers=2, log=log
        ) as base:
            assert httpx.get(f"{base}/health/ready").json()["status"] == "ok"
            statuses = asyncio.run(mixed_load(base, clients=16, seconds=4))
            # Taken while the service still holds its pools' connections.
            pools = [row for row in bouncer.show("POOLS") if row["database"] == name]
            # PgBouncer's own pool for looking roles up (auth_user) aside.
            pools = [row for row in pools if row["user"] != bouncer.user]
    started = log.read_text()
    assert statuses[201] > 0 and statuses[200] > 0, statuses
    errors = [line for line in started.splitlines() if "Error" in line]
    assert set(statuses) <= {200, 201}, (statuses, errors[-5:])
    # Transaction pooling: the service's connections shared fewer server connections
    # (the bouncer's pool size, which the caller sets below the service's pools).
    clients = sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in pools)
    servers = sum(int(p[f"sv_{state}"]) for p in pools for state in SERVER_STATES)
    assert servers <= SERVER_CONNECTIONS < clients, (clients, servers, pools)
    # Served as the service's role alone: the owner never reached PgBouncer.
    assert {pool["user"] for pool in pools} == {service.username}, pools
    assert started.count("client connections of PgBouncer's 500") == 2, started
    assert "6 direct connections (1 per worker" in started, started
    # PgBouncer carried the service's statements, and nothing that outlives a
    # transaction: every SET, RESET and session lock went to the server directly.
    assert any(statement.startswith("INSERT INTO project") for statement in bouncer.statements())
    leaks = bouncer.session_level()
    assert not leaks, sorted({" ".join(statement.split()) for statement in leaks})


def test_two_workers_stay_within_the_connection_budget(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    rendered = render("default")
    bin_dir = venv_for(rendered)
    check_server("postgresql")
    with scratch_database("postgresql", "workers") as url:
        name = url.rsplit("/", 1)[1]
        # Per worker: 3 reads + 2 writes + 1 readiness = 6; two workers: 12.
        env = {
            "DATABASE_URL": url,
            "WEB_CONCURRENCY": "2",
            "DB_POOL_SIZE": "3",
            "DB_WRITE_POOL_SIZE": "2",
            "DB_MAX_OVERFLOW": "0",
        }
        migrated = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        log = tmp_path / "uvicorn.log"
        peak = [0]
        watching = threading.Event()

        def watch() -> None:
            with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
                while not watching.is_set():
                    row = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (name,)
                    ).fetchone()
                    peak[0] = max(peak[0], int(row[0]) if row else 0)
                    time.sleep(0.02)

        with uvicorn(bin_dir, rendered.path, rendered.package, env, workers=2, log=log) as base:
            watcher = threading.Thread(target=watch)
            watcher.start()
            try:
                ids = asyncio.run(request_ids(base, clients=24, requests=20))
                statuses = asyncio.run(mixed_load(base, clients=24, seconds=3))
            finally:
                watching.set()
                watcher.join()
        output = log.read_text()
    assert set(statuses) <= {200, 201}, statuses
    assert len(ids) == len(set(ids)), "request ids repeat across workers"
    prefixes = {request_id.rsplit("-", 1)[0] for request_id in ids}
    assert len(prefixes) == 2, f"both workers answered: {prefixes}"
    # Each worker built its own pools, and said what they hold.
    assert len(re.findall(r"at most 6 connections per worker", output)) == 2, output
    assert "x 2 workers (WEB_CONCURRENCY)" in output
    assert 0 < peak[0] <= 12, f"{peak[0]} connections for a budget of 12"


async def request_ids(base: str, clients: int, requests: int) -> list[str]:
    ids: list[str] = []

    async def client() -> None:
        # A connection per request, so the kernel spreads them over both workers.
        for _ in range(requests):
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                response = await http.get("/api/v1/projects", params={"size": 1})
                assert response.status_code == 200, response.text
                ids.append(response.headers["x-request-id"])

    await asyncio.gather(*(client() for _ in range(clients)))
    return ids
