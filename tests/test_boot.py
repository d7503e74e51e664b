"""Full tier: each variant booted with uvicorn on a free port and spoken to over HTTP.

The outage is real: the service's database stops accepting connections and its
sessions are terminated, while the process keeps running; then it comes back.
"""

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from .conftest import Rendered
from .harness.auth import callers
from .harness.boot import start_up, uvicorn
from .harness.databases import (
    POSTGRES_DSN,
    connected_users,
    cut_off,
    mariadb,
    reconnect,
    scratch_database,
    two_roles,
)
from .harness.run import run

pytestmark = pytest.mark.full
# A readiness answer serves every probe for HEALTH_CACHE_SECONDS (1 s by default): a
# change of state shows once the answer given before it has expired.
READY_ANSWER_SECONDS = 1.1


def test_boot_round_trip_and_outage(
    variant: Rendered, venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    bin_dir = venv_for(variant)
    database = variant.answers["database"]
    with (
        scratch_database(database, variant.name) as scratch,
        two_roles(bin_dir, variant.path, variant.package, database, scratch) as roles,
    ):
        # Migrated by the owner, served by the service's role (README, "Database roles").
        url = roles.service
        env = {**roles.env(), "HEALTH_TIMEOUT": "2", "DB_POOL_TIMEOUT": "2"}
        if variant.answers["cache"]:
            # Keys of this boot's own on the shared Redis, gone seconds after it ends.
            env |= {"CACHE_KEY_PREFIX": f"boot-{uuid.uuid4().hex[:12]}", "CACHE_TTL_SECONDS": "5"}
        migrated = run(bin_dir, variant.path, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        with (
            callers(variant.answers) as auth,  # with auth=oidc, a real provider's token
            uvicorn(
                bin_dir, variant.path, variant.package, env | auth.env, log=tmp_path / "out"
            ) as base,
            httpx.Client(base_url=base, timeout=10, headers=auth.at(base)) as http,
        ):
            if variant.answers["example_domain"]:
                exercise_the_api(
                    http, soft_delete=variant.answers["soft_delete"], cache=variant.answers["cache"]
                )
            else:
                paths = http.get("/openapi.json").json()["paths"]
                assert not [path for path in paths if path.startswith("/api/")]
            if database != "sqlite":
                # The service's connections are its own role's, none the owner's.
                assert connected_users(database, url) == {urlsplit(url).username}
            if database != "sqlite":  # a file has no outage to stage: SQLite is in-process
                survive_an_outage(http, database, url, api=variant.answers["example_domain"])
        # Started with --no-access-log, as the Dockerfile starts it: no line per request.
        output = (tmp_path / "out").read_text()
        assert "Application startup complete" in output
        assert "uvicorn.access" not in output and '"GET /health/ready' not in output


def exercise_the_api(http: httpx.Client, *, soft_delete: bool, cache: bool = False) -> None:
    assert http.get("/health/live").status_code == 200
    assert http.get("/health/ready").json() == {
        "status": "ok",
        "checks": {"database": "ok", "schema": "ok"} | ({"cache": "ok"} if cache else {}),
    }
    slug = f"boot-{uuid.uuid4().hex[:8]}"
    created = http.post("/api/v1/projects", json={"name": "Booted", "slug": slug})
    assert created.status_code == 201, created.text
    project = created.json()
    url = f"/api/v1/projects/{project['id']}"
    assert http.get(url).json() == project
    assert project["id"] in [p["id"] for p in http.get("/api/v1/projects").json()["items"]]
    task = http.post(f"{url}/tasks", json={"title": "first"})
    assert task.status_code == 201, task.text
    updated = http.patch(url, json={"version": 1, "name": "Renamed"})
    assert updated.status_code == 200 and updated.json()["version"] == 2
    # A bad request, a conflict and a missing resource, each as problem details.
    bad = http.post("/api/v1/projects", json={"name": "", "slug": "Not A Slug"})
    assert bad.status_code == 422
    assert bad.headers["content-type"] == "application/problem+json"
    assert {e["loc"][-1] for e in bad.json()["errors"]} == {"name", "slug"}
    duplicate = http.post("/api/v1/projects", json={"name": "Again", "slug": slug})
    assert duplicate.status_code == 409, duplicate.text
    stale = http.patch(url, json={"version": 1, "name": "Lost update"})
    assert stale.status_code == 409 and stale.json()["type"].endswith("stale-version")
    missing = uuid.uuid4() if isinstance(project["id"], str) else 2**62
    assert http.get(f"/api/v1/projects/{missing}").status_code == 404
    assert http.delete(url).status_code == 204
    assert http.get(url).status_code == 404
    restored = http.post(f"{url}/restore")
    assert restored.status_code == (200 if soft_delete else 404)


def survive_an_outage(http: httpx.Client, database: str, url: str, *, api: bool) -> None:
    cut_off(database, url)
    time.sleep(READY_ANSWER_SECONDS)  # past the readiness answer given before the outage
    try:
        ready = http.get("/health/ready")
        assert ready.status_code == 503, ready.text
        assert ready.elapsed.total_seconds() < 3
        if api:
            failing = http.get("/api/v1/projects")
            assert failing.status_code == 503, failing.text
            assert failing.headers["retry-after"]
            assert failing.elapsed.total_seconds() < 3
            assert url.rsplit("/", 1)[1] not in failing.text
        # Liveness says the process is up whatever the database does: an orchestrator
        # that restarted the service for a database outage would only add to it.
        for _ in range(3):
            live = http.get("/health/live")
            assert live.status_code == 200, live.text
            assert live.elapsed.total_seconds() < 1
    finally:
        reconnect(database, url)
    # The outage ended every session of the pool: the liveness probe, called again now
    # that the database accepts connections, must open none (it never touches it)...
    before = sessions(database, url)
    assert before.open == 0, before
    for _ in range(3):
        assert http.get("/health/live").status_code == 200
    after = sessions(database, url)
    assert after == before, f"/health/live connected to the database: {before} -> {after}"
    # ...while readiness does, and the count sees it (the check above can fail). Its
    # answer from the outage is reused for a moment first.
    time.sleep(READY_ANSWER_SECONDS)
    assert http.get("/health/ready").status_code == 200
    seen = sessions(database, url)
    assert seen.open > 0 and seen != before, seen
    if api:
        assert http.get("/api/v1/projects").status_code == 200


class Sessions(NamedTuple):
    """The service's sessions on its database: open now, and (PostgreSQL) ever opened."""

    open: int
    established: int | None


def sessions(database: str, url: str) -> Sessions:
    """Counted by the database server itself, as the service cannot hide a connection."""
    name = url.rsplit("/", 1)[1]
    if database == "postgresql":
        with psycopg.connect(POSTGRES_DSN, autocommit=True, connect_timeout=5) as conn:
            # A session's own counters reach pg_stat_database when it ends or idles a
            # second: wait that long so one opened just now is counted.
            time.sleep(1.5)
            row = conn.execute(
                "SELECT (SELECT count(*) FROM pg_stat_activity WHERE datname = %(name)s),"
                " (SELECT sessions FROM pg_stat_database WHERE datname = %(name)s)",
                {"name": name},
            ).fetchone()
        assert row is not None
        return Sessions(int(row[0]), int(row[1]))
    user = url.split("://", 1)[1].split(":", 1)[0]  # MariaDB: the database's own user
    ((count,),) = mariadb(
        f"SELECT count(*) FROM information_schema.processlist WHERE user = '{user}'"
    )
    return Sessions(int(str(count)), None)


MISSING_DATABASE = {
    "postgresql": "postgresql+asyncpg://postgres@127.0.0.1:5432/cfs_no_such_database",
    "mysql": "mysql+asyncmy://root@127.0.0.1:3306/cfs_no_such_database",
    "sqlite": "sqlite+aiosqlite:////cfs/no/such/directory/service.db",
}

# The line names what is missing and says how to make it.
MISSING_LINE = {
    "postgresql": ('database "cfs_no_such_database" does not exist', "createdb"),
    "mysql": ("database 'cfs_no_such_database' does not exist", "CREATE DATABASE"),
    "sqlite": ("cannot open '/cfs/no/such/directory/service.db'", "directory exist"),
}


@pytest.mark.parametrize("name", ["default", "mysql-int-soft-delete", "sqlite-int-hard-delete"])
def test_a_missing_database_stops_start_up_and_alembic_in_one_line(
    name: str, render: Callable[[Rendered], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    """A new user who has not created the database yet: no retries, no traceback, one
    line that names the database and says how to create it."""
    rendered = render(name)  # type: ignore[arg-type]
    bin_dir = venv_for(rendered)
    env = {"DATABASE_URL": MISSING_DATABASE[rendered.answers["database"]]}
    server = start_up(bin_dir, rendered.path, rendered.package, env)
    assert not server.ok
    assert "retrying" not in server.output, "a permanent error is not retried"
    assert "Traceback" not in server.output, server.output
    (line,) = [line for line in server.output.splitlines() if "cannot start:" in line]
    assert all(part in line for part in MISSING_LINE[rendered.answers["database"]]), line
    migrate = run(bin_dir, rendered.path, "alembic", "upgrade", "head", env=env)
    assert not migrate.ok
    assert "Traceback" not in migrate.output, migrate.output
    assert migrate.output.strip().splitlines()[-1].startswith("alembic: "), migrate.output


@pytest.mark.parametrize("name", ["default", "mysql-int-soft-delete"])
def test_production_refuses_a_superuser_in_one_line(
    name: str, render: Callable[[Rendered], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    """The administrator's URL given as DATABASE_URL in production: start-up stops with one
    line that names the settings to change, and no traceback."""
    rendered = render(name)  # type: ignore[arg-type]
    bin_dir = venv_for(rendered)
    database = rendered.answers["database"]
    with scratch_database(database, "superuser") as url:
        env = {
            "DATABASE_URL": url,  # the server's superuser (postgres, root)
            "ENVIRONMENT": "production",
            "CURSOR_SECRET": "a-secret-of-at-least-32-characters-for-tests",
        }
        server = start_up(bin_dir, rendered.path, rendered.package, env)
    assert not server.ok
    assert "Traceback" not in server.output, server.output
    (line,) = [line for line in server.output.splitlines() if "cannot start:" in line]
    assert "superuser" in line and "DATABASE_URL" in line and "DATABASE_OWNER_URL" in line, line
