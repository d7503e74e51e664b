"""Full tier: each variant's own test suite, run as its developers run it, on real PostgreSQL."""

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.postgres import admin, server_url
from .harness.run import parse_pytest_summary, run

pytestmark = pytest.mark.full


def test_the_services_own_tests_pass(
    variant: Rendered, venv_for: Callable[[Rendered], Path]
) -> None:
    admin("SELECT 1")  # fails with how-to-start instructions when PostgreSQL is down
    outcome = run(
        venv_for(variant),
        variant.path,
        "pytest",
        "-p",
        "no:cacheprovider",
        env={"DATABASE_URL": f"{server_url()}/postgres"},
    )
    counts = parse_pytest_summary(outcome.output)
    assert outcome.ok, outcome.output[-5000:]
    assert counts.passed > 0, outcome.output[-2000:]
    assert counts.failed == counts.errors == 0
    assert counts.skipped == 0, "the service's suite never skips: " + outcome.output[-2000:]
