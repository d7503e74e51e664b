"""A capability added to a living service by `copier update --data`, and removed again.

For each optional capability on every backend it supports (CAPABILITIES: one row each),
a service is rendered from the template's working tree (a git repository of it), its
team changes it as teams do (a setting of their own in `settings.py` and
`.env.example`, a module with a route registered in `main.py`, its test, a README
section), and then:

- `copier update --data <question>=<on>` (as the service's `scripts/template-update
  update` runs it, to the template's HEAD): no conflict marker and no `.rej` file
  anywhere; every file the team did not touch is exactly what a fresh render with the
  capability has, the capability's files are there and every edit of the team is kept;
  ruff, the formatter, mypy --strict and the service's whole suite on its real
  database pass (the team's own test among them).
- `copier update --data <question>=<off>`: again no conflict; the service is byte for
  byte what it was before the capability came (no setting, line of `.env.example`,
  compose or Kubernetes entry, file or dependency of it left). Because it is that same
  tree, which the step before proved green with the team's edits and tests/test_service
  proves green without them, the check after the removal is narrower: ruff and the
  team's own test with the health tests (the app builds and serves without it).
"""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from copier import run_copy

from .conftest import Rendered
from .harness import releases
from .harness.databases import admin_url, check_server
from .harness.paths import TEMPLATE_ROOT
from .harness.run import run, service_suite
from .variants import DATABASES

TOOLS = Path(sys.executable).parent  # Copier
ANSWERS = {"project_name": "Ledger", "author_email": "ops@example.org"}


@dataclass(frozen=True)
class Capability:
    """An optional capability: the question that asks for it, the answer that turns it
    on, the one that leaves it out (the default) and the backends that offer it."""

    question: str
    on: object
    off: object
    databases: tuple[str, ...] = DATABASES
    # Settings the service's suite needs while it is on, beside DATABASE_URL.
    env: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """`cache`, or `auth-oidc` for a question answered with a word."""
        return self.question if self.on is True else f"{self.question}-{self.on}"

    def data(self, value: object) -> str:
        """`--data` for `value`, as Copier reads it from the command line (YAML)."""
        return f"{self.question}={json.dumps(value) if isinstance(value, bool) else value}"


# One row per capability, and one per answer that turns it on another way (a question
# answered with a word: `Capability("auth", "oidc", "none", env={...})`).
CAPABILITIES = (
    Capability("cache", True, False),
    Capability("tracing", True, False),
    Capability("jobs", True, False, ("postgresql",)),
    Capability("auth", "oidc", "none"),
    Capability("auth", "password", "none"),
)
# The questions that shape a service rather than add a capability to it.
SHAPES = {
    "project_name",
    "project_slug",
    "package_name",
    "description",
    "author_name",
    "author_email",
    "python_version",
    "database",
    "primary_key",
    "soft_delete",
    "example_domain",
}
CASES = [
    pytest.param(capability, database, id=f"{capability.name}-{database}")
    for capability in CAPABILITIES
    for database in capability.databases
]

# The team's own module, its route registered in main.py, and its test.
REPORTS = '''\
"""The team's own endpoint: how many rows an export holds at most."""

from fastapi import APIRouter

from .settings import get_settings

router = APIRouter(prefix="/reports", tags=["reports"])


@router.get("/limits")
async def limits() -> dict[str, int]:
    return {"export_limit": get_settings().export_limit}
'''
REPORTS_TEST = """\
from httpx import AsyncClient


async def test_the_export_limit_is_served(client: AsyncClient) -> None:
    response = await client.get("/api/v1/reports/limits")
    assert response.status_code == 200, response.text
    assert response.json() == {"export_limit": 5000}
"""
SETTING = (
    "    # Rows an export holds at most (the team's own setting).\n    export_limit: int = 5000\n"
)
ENV_LINE = "# Rows an export holds at most.\n# EXPORT_LIMIT=5000\n"
RUNBOOK = "\n## Our runbook\n\nPage the ledger team.\n"
TEAM_TEST = "tests/api/test_reports.py"

Kept = list[tuple[Path, str]]


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The template's working tree, committed in a repository of its own."""
    return releases.snapshot(tmp_path_factory.mktemp("template") / "repo")


def render(repo: Path, into: Path, data: dict[str, Any]) -> Path:
    run_copy(str(repo), into, data={**ANSWERS, **data}, defaults=True, vcs_ref="HEAD", quiet=True)
    return into


def commit_all(project: Path, message: str) -> None:
    if not (project / ".git").exists():
        releases.git(project, "init", "-q", "-b", "main")
    releases.git(project, "add", "-A")
    releases.git(project, "commit", "-q", "--allow-empty", "-m", message)


def answers_of(project: Path) -> dict[str, Any]:
    return dict(yaml.safe_load((project / ".copier-answers.yml").read_text()))


def edit_like_a_team(project: Path) -> Kept:
    """The team's changes; returns (file, text it must keep)."""
    package = answers_of(project)["package_name"]
    src = project / "src" / package
    settings = src / "settings.py"
    text = settings.read_text()
    assert text.count("\n\n\n@lru_cache\n") == 1, text
    settings.write_text(text.replace("\n\n\n@lru_cache\n", f"\n{SETTING}\n\n@lru_cache\n"))
    example = project / ".env.example"
    example.write_text(example.read_text() + ENV_LINE)
    (src / "reports.py").write_text(REPORTS)
    main = src / "main.py"
    text = main.read_text()
    for anchor, line in (
        ("from .settings import Settings\n", "from .reports import router as reports_router\n"),
        ("    app.include_router(api)\n", "    api.include_router(reports_router)\n"),
    ):
        assert text.count(anchor) == 1, (anchor, text)
        text = text.replace(anchor, line + anchor)
    main.write_text(text)
    (project / TEAM_TEST).write_text(REPORTS_TEST)
    readme = project / "README.md"
    readme.write_text(readme.read_text() + RUNBOOK)
    return [
        (settings, SETTING),
        (example, ENV_LINE),
        (src / "reports.py", REPORTS),
        (main, "from .reports import router as reports_router\n"),
        (main, "    api.include_router(reports_router)\n"),
        (project / TEAM_TEST, REPORTS_TEST),
        (readme, RUNBOOK),
    ]


def tree(root: Path) -> dict[str, bytes]:
    """Every file of a service but git's, by its path."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }


def differences(left: dict[str, bytes], right: dict[str, bytes]) -> list[str]:
    return sorted(
        [f"only before: {n}" for n in left.keys() - right.keys()]
        + [f"only after: {n}" for n in right.keys() - left.keys()]
        + [f"differs: {n}" for n in left.keys() & right.keys() if left[n] != right[n]]
    )


def update(project: Path, data: str) -> None:
    """The service's own `scripts/template-update update` (tests/test_template_update.py),
    to the template's HEAD with one answer changed: what a team runs by hand."""
    env = {**os.environ, "LANG": "C.UTF-8", "PATH": f"{TOOLS}:{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        ["scripts/template-update", "update", "--vcs-ref", "HEAD", "--data", data, "--quiet"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def leftovers(project: Path) -> list[str]:
    """Files holding conflict markers, and `.rej` files."""
    found = []
    for name, data in tree(project).items():
        text = data.decode("utf-8", "replace")
        if name.endswith(".rej") or any(
            line.startswith(("<<<<<<< ", ">>>>>>> ")) for line in text.splitlines()
        ):
            found.append(name)
    return found


def test_every_capability_has_a_row() -> None:
    """Every question of copier.yml that is not one of the service's shape is a
    capability of the table above: a new one cannot miss its add and remove test."""
    documents = (TEMPLATE_ROOT / "copier.yml").read_text().split("\n---")
    questions = {
        name
        for document in documents
        for name, spec in (yaml.safe_load(document.split("!include")[0]) or {}).items()
        if not name.startswith("_") and isinstance(spec, dict) and spec.get("when") is not False
    }
    assert questions - SHAPES == {capability.question for capability in CAPABILITIES}


@pytest.mark.parametrize(
    ("capability", "database"),
    [
        pytest.param(capability, database, id=f"{capability.name}-{database}")
        for capability in CAPABILITIES
        for database in DATABASES
        if database not in capability.databases
    ],
)
def test_a_capability_is_refused_on_the_backends_its_row_leaves_out(
    template_repo: Path, tmp_path: Path, capability: Capability, database: str
) -> None:
    """The rows' backends are copier.yml's: the others refuse the answer."""
    with pytest.raises(ValueError, match=capability.question):
        render(
            template_repo,
            tmp_path / "svc",
            {"database": database, capability.question: capability.on},
        )


@pytest.mark.full
@pytest.mark.parametrize(("capability", "database"), CASES)
def test_a_capability_is_added_to_an_edited_service_and_removed(
    template_repo: Path,
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
    capability: Capability,
    database: str,
) -> None:
    check_server(database)  # fails with how-to-start instructions when the server is down
    project = render(template_repo, tmp_path / "svc", {"database": database})
    commit_all(project, "first render")
    fresh_off = tree(project)
    kept = edit_like_a_team(project)
    commit_all(project, "our changes")
    before = tree(project)
    touched = {str(path.relative_to(project)) for path, _ in kept}
    fresh_on = tree(
        render(
            template_repo,
            tmp_path / "fresh",
            {"database": database, capability.question: capability.on},
        )
    )
    assert fresh_on != fresh_off, f"{capability.question}={capability.on} changes nothing"

    update(project, capability.data(capability.on))

    assert leftovers(project) == []
    assert answers_of(project)[capability.question] == capability.on
    added = tree(project)
    assert (
        differences(
            {n: d for n, d in fresh_on.items() if n not in touched},
            {n: d for n, d in added.items() if n not in touched},
        )
        == []
    ), "files the team did not touch differ from a fresh render with the capability"
    for path, text in kept:
        assert text in path.read_text(), f"{path} lost {text!r}"
    bin_dir = venv_for(Rendered(capability.question, project, answers_of(project)))
    for tool in (
        ("ruff", "check", "--no-cache", "."),
        ("ruff", "format", "--no-cache", "--check", "."),
        # A cache of this run's own (per xdist worker): the cases after the first one
        # a worker runs read the dependencies' types from it instead of again.
        ("mypy", "--strict", "--cache-dir", str(tmp_path_factory.getbasetemp() / "mypy")),
    ):
        checked = run(bin_dir, project, *tool)
        assert checked.ok, (tool, checked.output[-5000:])
    suite, counts = service_suite(
        bin_dir, project, admin_url(database, tmp_path), env=capability.env
    )
    assert suite.ok, suite.output[-5000:]
    assert counts.passed > 0 and counts.failed == counts.errors == counts.skipped == 0
    assert f"PASSED {TEAM_TEST}::test_the_export_limit_is_served" in suite.output
    commit_all(project, f"with {capability.question}")

    update(project, capability.data(capability.off))

    assert leftovers(project) == []
    assert differences(before, tree(project)) == [], (
        f"removing {capability.question} left the service other than it was before"
    )
    linted = run(bin_dir, project, "ruff", "check", "--no-cache", ".")
    assert linted.ok, linted.output[-5000:]
    narrow, counts = service_suite(
        bin_dir, project, admin_url(database, tmp_path), TEAM_TEST, "tests/api/test_health.py"
    )
    assert narrow.ok, narrow.output[-5000:]
    assert counts.passed > 1 and counts.failed == counts.errors == 0
    shutil.rmtree(tmp_path / "fresh")
