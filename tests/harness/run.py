"""Run commands inside a rendered service, the way its developers would."""

import os
import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .paths import KIT_TESTS, TEMPLATE_ROOT


@dataclass
class Outcome:
    returncode: int
    output: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run(
    bin_dir: Path, project: Path, *args: str, env: dict[str, str] | None = None, timeout: int = 600
) -> Outcome:
    """Run a tool from the shared venv in `project`, with a clean, explicit environment."""
    full_env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",  # leave the render as the template made it
        **(env or {}),
    }
    result = subprocess.run(
        [str(bin_dir / args[0]), *args[1:]],
        check=False,
        cwd=project,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Outcome(result.returncode, result.stdout + result.stderr)


@dataclass
class TestCounts:
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0


def parse_pytest_summary(output: str) -> TestCounts:
    """Counts from pytest's closing line, e.g. `== 85 passed, 2 skipped in 3.1s ==`."""
    counts = TestCounts()
    lines = [line for line in output.splitlines() if re.search(r"\d+ (passed|failed|error)", line)]
    if lines:
        for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", lines[-1]):
            field = "errors" if word.startswith("error") else word
            setattr(counts, field, int(number))
    return counts


def service_suite(
    bin_dir: Path,
    project: Path,
    database_url: str,
    *pytest_args: str,
    env: dict[str, str] | None = None,
) -> tuple[Outcome, TestCounts]:
    """A rendered service's own suite (or the part `pytest_args` selects), run as its
    developers run it, with every outcome listed (`-rA`) so that a test can say which of
    its tests passed. `env` adds settings beside DATABASE_URL."""
    outcome = run(
        bin_dir,
        project,
        "pytest",
        "-p",
        "no:cacheprovider",
        "-rA",
        *pytest_args,
        env={"DATABASE_URL": database_url, **(env or {})},
    )
    return outcome, parse_pytest_summary(outcome.output)


def kit_suite(
    bin_dir: Path,
    project: Path,
    database_url: str,
    *pytest_args: str,
    paths: Sequence[Path] = (KIT_TESTS,),
    env: dict[str, str] | None = None,
) -> tuple[Outcome, TestCounts]:
    """The kit's own tests (tests/kit/, or the files of it `paths` names) on a render of
    KIT_VARIANTS: run in the render with its pytest configuration and venv, where they
    import it as `service`, and reported with every outcome (`-rA`). Only tests/kit's
    own conftest applies (the template's is for the template's tests)."""
    outcome = run(
        bin_dir,
        project,
        "pytest",
        "-p",
        "no:cacheprovider",
        "-c",
        "pyproject.toml",
        "--rootdir",
        str(TEMPLATE_ROOT),
        "--confcutdir",
        str(KIT_TESTS),
        "-rA",
        *pytest_args,
        *(str(path) for path in paths),
        env={"DATABASE_URL": database_url, **(env or {})},
    )
    return outcome, parse_pytest_summary(outcome.output)
