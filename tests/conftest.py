"""Session-wide fixtures: each variant rendered once, one shared venv per Python."""

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pytest_copie.plugin import Copie

from .harness.paths import TEMPLATE_ROOT
from .harness.venv import service_venv
from .variants import KIT_VARIANTS, VARIANTS

# The kit's own tests run inside a render, not here (tests/test_kit.py runs them).
collect_ignore = ["kit"]


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    # pytest-copie renders the template named by --template (default "."): make it this
    # checkout, whatever directory pytest was started from.
    if Path(config.option.template).resolve() != TEMPLATE_ROOT and config.option.template in (
        ".",
        str(Path.cwd()),
    ):
        config.option.template = str(TEMPLATE_ROOT)


# Set by scripts/test when PyPI's vulnerability advisories cannot be reached from this
# machine: the reason, which the run's header repeats beside the tests it leaves out.
NO_ADVISORIES = os.environ.get("CFS_NO_ADVISORIES", "")


def pytest_report_header(config: pytest.Config) -> str | None:
    if NO_ADVISORIES:
        return f"not run here (`advisories` tests deselected): {NO_ADVISORIES}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not NO_ADVISORIES:
        return
    left_out = [item for item in items if item.get_closest_marker("advisories")]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not item.get_closest_marker("advisories")]


class Rendered:
    """A rendered variant: where it is and what it was asked."""

    def __init__(self, name: str, path: Path, answers: dict[str, Any]) -> None:
        self.name = name
        self.path = path
        self.answers = answers
        # What the template produced, before any tool ran in the directory.
        self.files = sorted(p for p in path.rglob("*") if p.is_file() and ".git" not in p.parts)

    @property
    def package(self) -> str:
        return str(self.answers["package_name"])

    @property
    def python_version(self) -> str:
        return str(self.answers["python_version"])


@pytest.fixture(scope="session")
def render(copie_session: Copie) -> Callable[[str], Rendered]:
    """`render(name)` renders a variant of tests/variants.py (of VARIANTS, or a kit's
    render of KIT_VARIANTS) once per test session."""
    cache: dict[str, Rendered] = {}

    def get(name: str) -> Rendered:
        if name not in cache:
            answers = VARIANTS[name] if name in VARIANTS else KIT_VARIANTS[name]
            result = copie_session.copy(extra_answers=answers)
            if result.exception is not None:
                raise AssertionError(f"variant {name} did not render: {result.exception}")
            assert result.project_dir is not None
            answers = yaml.safe_load((result.project_dir / ".copier-answers.yml").read_text())
            cache[name] = Rendered(name, result.project_dir, answers)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def venv_for() -> Callable[[Rendered], Path]:
    """`venv_for(rendered)`: bin dir of the shared venv that can run that service."""
    return lambda rendered: service_venv(rendered.path, rendered.python_version)


@pytest.fixture(params=sorted(VARIANTS))
def variant(
    request: pytest.FixtureRequest, render: Callable[[str], Rendered]
) -> Iterator[Rendered]:
    yield render(request.param)
