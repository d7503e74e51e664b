"""Full tier: each variant's own test suite, run as its developers run it, on real PostgreSQL."""

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import admin_url, check_server
from .harness.run import parse_pytest_summary, run

pytestmark = pytest.mark.full


def test_the_services_own_tests_pass(
    variant: Rendered, venv_for: Callable[[Rendered], Path], tmp_path: Path
) -> None:
    database = variant.answers["database"]
    check_server(database)  # fails with how-to-start instructions when the server is down
    outcome = run(
        venv_for(variant),
        variant.path,
        "pytest",
        "-p",
        "no:cacheprovider",
        env={"DATABASE_URL": admin_url(database, tmp_path)},
    )
    counts = parse_pytest_summary(outcome.output)
    assert outcome.ok, outcome.output[-5000:]
    assert counts.passed > 0, outcome.output[-2000:]
    assert counts.failed == counts.errors == 0
    assert counts.skipped == 0, "the service's suite never skips: " + outcome.output[-2000:]
