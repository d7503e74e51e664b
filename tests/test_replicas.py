"""Full tier: the default service with a real streaming replica (tests/harness/replica.py).

A driver runs the service in its own venv (its app, its lifespan, HTTP through httpx's
ASGI transport) and counts the statements each request sends to each server, with
SQLAlchemy listeners on each engine; the test stages the replica's states in between.
"""

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from .conftest import Rendered
from .harness.databases import scratch_database
from .harness.replica import Replica, lsn, replica_fixtures
from .harness.run import run

pytestmark = pytest.mark.full

replica_server, replica = replica_fixtures()

# Reads one request a line from stdin, answers with the response and, per server, the
# statements the request sent: reads and writes on the primary, the consistency token's
# query, and reads and position checks on the replica.
DRIVER = """
import asyncio, json, sys
import httpx
from sqlalchemy import event
from {package}.core.config import Settings
from {package}.main import create_app


async def main():
    app = create_app(Settings())
    async with app.router.lifespan_context(app):
        db = app.state.db
        counts = dict.fromkeys(["writes", "primary_reads", "tokens", "replica_reads", "checks"], 0)

        def counter(kind, special=None, special_kind=None):
            def count(conn, cursor, statement, *rest):
                name = special_kind if special and special in statement else kind
                counts[name] += 1
            return count

        listen = event.listen
        listen(db.engine.sync_engine, "before_cursor_execute", counter("writes"))
        listen(db.read_engine.sync_engine, "before_cursor_execute",
               counter("primary_reads", "pg_current_wal_lsn", "tokens"))
        for each in db.replicas:
            listen(each.engine.sync_engine, "before_cursor_execute",
                   counter("replica_reads", "pg_last_wal_replay_lsn", "checks"))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as http:
            loop = asyncio.get_running_loop()
            while line := await loop.run_in_executor(None, sys.stdin.readline):
                ask = json.loads(line)
                before = dict(counts)
                response = await http.request(
                    ask["method"], ask["path"], json=ask.get("json"), headers=ask.get("headers")
                )
                answer = {{
                    "status": response.status_code,
                    "headers": dict(response.headers),
                    "body": response.json() if response.content else None,
                    "statements": {{k: counts[k] - before[k] for k in counts}},
                }}
                print(json.dumps(answer), flush=True)


asyncio.run(main())
"""

Call = Callable[..., dict[str, Any]]


@contextmanager
def driver(bin_dir: Path, rendered: Rendered, env: dict[str, str]) -> Iterator[Call]:
    """Yield `call(method, path, json=None, token=None)` answered by the service in-process."""
    script = rendered.path / "replica_driver.py"
    script.write_text(DRIVER.format(package=rendered.package))
    process = subprocess.Popen(
        [str(bin_dir / "python"), str(script)],
        cwd=rendered.path,
        env={
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONPATH": "src",
            **env,
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None

    def call(
        method: str, path: str, json_body: Any = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"X-Consistency-Token": token} if token else {}
        ask = {"method": method, "path": path, "json": json_body, "headers": headers}
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(ask) + "\n")
        process.stdin.flush()
        line = process.stdout.readline()
        if not line:
            process.wait(timeout=30)
            errors = process.stderr.read() if process.stderr else ""
            raise AssertionError(f"the driver died:\n{errors[-5000:]}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    try:
        yield call
    finally:
        process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        script.unlink(missing_ok=True)


def until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except psycopg.Error:
            pass
        time.sleep(0.05)
    raise AssertionError(f"gave up waiting for {what}")


def served_by_replica(answer: dict[str, Any]) -> bool:
    counts = answer["statements"]
    return counts["replica_reads"] > 0 and counts["primary_reads"] == 0


def served_by_primary(answer: dict[str, Any]) -> bool:
    counts = answer["statements"]
    return counts["primary_reads"] > 0 and counts["replica_reads"] == 0


@contextmanager
def service(
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    replica: Replica,
    **settings: str,
) -> Iterator[Call]:
    """The default service on a new, migrated database, with `replica` as its replica."""
    rendered = render("default")
    bin_dir = venv_for(rendered)
    with scratch_database("postgresql", "replicas") as url:
        database = url.rsplit("/", 1)[1]
        migrated = run(
            bin_dir, rendered.path, "alembic", "upgrade", "head", env={"DATABASE_URL": url}
        )
        assert migrated.ok, migrated.output[-3000:]
        until(lambda: bool(replica.fetch("SELECT 1 FROM alembic_version", database)), "the schema")
        env = {"DATABASE_URL": url, "DB_REPLICA_URLS": replica.url(database), **settings}
        env.setdefault("HEALTH_CACHE_SECONDS", "0")  # each probe asks the replicas now
        with driver(bin_dir, rendered, env) as call:
            yield call


PROJECTS = "/api/v1/projects"


def test_reads_go_to_the_replica_and_see_their_own_writes(
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    replica: Replica,
) -> None:
    # Generous bounds: a loaded machine must not take the replica out while replay is paused.
    settings = {"DB_REPLICA_MAX_LAG": "120", "DB_REPLICA_RETRY_SECONDS": "120"}
    with service(render, venv_for, replica, **settings) as call:
        ready = call("GET", "/health/ready")
        assert ready["status"] == 200 and ready["body"]["checks"]["replicas"] == "ok"

        # A write: on the primary, and one more statement for its token.
        first = call("POST", PROJECTS, {"name": "First", "slug": "first"})
        assert first["status"] == 201, first
        token = first["headers"]["x-consistency-token"]
        assert first["statements"]["tokens"] == 1
        assert first["statements"]["replica_reads"] == 0
        location = first["headers"]["location"]
        until(lambda: replica.replay_lsn() >= lsn(token), "replay of the first write")

        # Reads, with or without its token, on the replica once it has replayed it.
        plain = call("GET", location)
        assert plain["status"] == 200 and served_by_replica(plain), plain
        time.sleep(0.05)  # past DB_REPLICA_POSITION_MS: the position is asked again
        with_token = call("GET", location, token=token)
        assert with_token["status"] == 200 and served_by_replica(with_token), with_token
        assert "x-consistency-token" not in with_token["headers"]

        # Replay paused: the token's read goes to the primary and sees the write...
        replica.pause_replay()
        second = call("POST", PROJECTS, {"name": "Second", "slug": "second"})
        assert second["status"] == 201, second
        second_token = second["headers"]["x-consistency-token"]
        assert lsn(second_token) > lsn(token)
        seen = call("GET", second["headers"]["location"], token=second_token)
        assert seen["status"] == 200 and served_by_primary(seen), seen
        assert seen["body"]["slug"] == "second"
        # ... and one without it, on the replica, does not (yet).
        unseen = call("GET", second["headers"]["location"])
        assert unseen["status"] == 404 and served_by_replica(unseen), unseen

        # Replay resumed: token reads return to the replica.
        replica.resume_replay()
        until(lambda: replica.replay_lsn() >= lsn(second_token), "replay to resume")
        time.sleep(0.05)
        back = call("GET", second["headers"]["location"], token=second_token)
        assert back["status"] == 200 and served_by_replica(back), back

        malformed = call("GET", location, token="not-a-position")
        assert malformed["status"] == 422, malformed

        # The replica stops mid-run: no request fails, the primary serves the reads.
        replica.stop()
        answers = [call("GET", location) for _ in range(5)]
        answers.append(call("GET", second["headers"]["location"], token=second_token))
        answers.append(call("POST", PROJECTS, {"name": "Third", "slug": "third"}))
        assert [a["status"] for a in answers] == [200] * 6 + [201], answers
        assert all(a["statements"]["primary_reads"] > 0 for a in answers[:6]), answers
        # The first met the replica's closed connection and ran again on the primary.
        assert answers[0]["statements"]["replica_reads"] == 1, answers[0]
        ready = call("GET", "/health/ready")
        assert ready["status"] == 200, ready
        # Which replica is out, and why, is in the service's log, not in the body.
        assert ready["body"]["checks"]["replicas"] == "degraded", ready


def test_a_replica_too_far_behind_leaves_the_rotation_until_it_catches_up(
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    replica: Replica,
) -> None:
    settings = {"DB_REPLICA_MAX_LAG": "1", "DB_REPLICA_RETRY_SECONDS": "1"}
    with service(render, venv_for, replica, **settings) as call:
        first = call("POST", PROJECTS, {"name": "First", "slug": "first"})
        until(
            lambda: replica.replay_lsn() >= lsn(first["headers"]["x-consistency-token"]), "replay"
        )
        location = first["headers"]["location"]
        time.sleep(0.05)
        assert served_by_replica(call("GET", location))

        # Replay paused with a write received: the lag grows past DB_REPLICA_MAX_LAG.
        replica.pause_replay()
        call("POST", PROJECTS, {"name": "Second", "slug": "second"})
        time.sleep(1.5)
        call("GET", location)  # finds the position stale and has it checked
        ready = call("GET", "/health/ready")
        assert ready["status"] == 200, ready
        assert ready["body"]["checks"]["replicas"] == "degraded", ready
        aside = call("GET", location)
        assert aside["status"] == 200 and served_by_primary(aside), aside

        # Caught up: back in rotation at the next check.
        replica.resume_replay()
        time.sleep(1.1)  # DB_REPLICA_RETRY_SECONDS
        ready = call("GET", "/health/ready")
        assert ready["body"]["checks"]["replicas"] == "ok", ready
        back = call("GET", location)
        assert back["status"] == 200 and served_by_replica(back), back


def test_a_replicas_position_is_asked_once_per_period_not_once_per_read(
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    replica: Replica,
) -> None:
    """Reads cost no check of their own: with the position trusted for a minute, twenty
    reads without a token and one with a token ask the replica nothing (the token read,
    finding the cached position behind it, goes to the primary instead of asking)."""
    settings = {
        "DB_REPLICA_POSITION_MS": "60000",
        "DB_REPLICA_MAX_LAG": "120",
        "DB_REPLICA_RETRY_SECONDS": "120",
    }
    with service(render, venv_for, replica, **settings) as call:
        first = call("POST", PROJECTS, {"name": "First", "slug": "first"})
        assert first["status"] == 201, first
        token = first["headers"]["x-consistency-token"]
        until(lambda: replica.replay_lsn() >= lsn(token), "replay of the first write")
        reads = [call("GET", first["headers"]["location"]) for _ in range(20)]
        with_token = call("GET", first["headers"]["location"], token=token)
    assert all(r["status"] == 200 and served_by_replica(r) for r in reads), reads
    assert sum(r["statements"]["checks"] for r in reads) == 0, reads
    assert with_token["status"] == 200 and served_by_primary(with_token), with_token
    assert with_token["statements"]["checks"] == 0, with_token
