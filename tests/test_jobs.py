"""Full tier: background jobs behind a real PgBouncer (Debian's, transaction pooling).

The kit's tests of the jobs (tests/kit/test_jobs*.py) run with DATABASE_URL through
PgBouncer and DATABASE_DIRECT_URL on the server: jobs are enqueued through PgBouncer
in the units of work, and the worker, which LISTENs, reaches the server directly, so
no LISTEN and nothing else that outlives a transaction goes through PgBouncer.
"""

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.paths import KIT_TESTS
from .harness.pgbouncer import pgbouncer
from .harness.run import kit_suite

pytestmark = pytest.mark.full

SERVER = "postgresql+asyncpg://postgres@127.0.0.1:5432"  # the server itself, no database
JOBS_TESTS = (KIT_TESTS / "test_jobs.py", KIT_TESTS / "test_jobs_worker.py")
LISTEN = re.compile(r"^\s*(UN)?LISTEN\b", re.IGNORECASE)


def test_jobs_are_enqueued_through_pgbouncer_and_the_worker_listens_past_it(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    kit = render("kit-postgresql")
    env = {"DB_BEHIND_PGBOUNCER": "true", "DATABASE_DIRECT_URL": SERVER}
    with pgbouncer(record=True) as bouncer:
        suite, counts = kit_suite(
            venv_for(kit), kit.path, bouncer.url("postgres"), paths=JOBS_TESTS, env=env
        )
        sent = bouncer.statements()
        carried = bouncer.session_level()
    assert suite.ok, suite.output[-5000:]
    assert counts.passed >= 10 and counts.failed == counts.errors == counts.skipped == 0
    passed = [line for line in suite.output.splitlines() if line.startswith("PASSED ")]
    assert any("test_an_idle_worker_wakes_on_the_commit_of_a_job" in line for line in passed)
    assert any("INSERT INTO pgqueuer" in statement for statement in sent), "no enqueue seen"
    assert [s for s in sent if LISTEN.search(s)] == []
    assert carried == []
