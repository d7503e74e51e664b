"""Every variant is lint-clean, formatted as rendered, and passes mypy --strict."""

from collections.abc import Callable
from pathlib import Path

from .conftest import Rendered
from .harness.run import run


def test_ruff_check(variant: Rendered, venv_for: Callable[[Rendered], Path]) -> None:
    outcome = run(venv_for(variant), variant.path, "ruff", "check", "--no-cache", ".")
    assert outcome.ok, outcome.output


def test_ruff_format_needs_no_changes(
    variant: Rendered, venv_for: Callable[[Rendered], Path]
) -> None:
    outcome = run(venv_for(variant), variant.path, "ruff", "format", "--no-cache", "--check", ".")
    assert outcome.ok, outcome.output


def test_mypy_strict(variant: Rendered, venv_for: Callable[[Rendered], Path]) -> None:
    outcome = run(venv_for(variant), variant.path, "mypy", "--strict", "--cache-dir", "/dev/null")
    assert outcome.ok, outcome.output
    assert "Success: no issues found" in outcome.output
