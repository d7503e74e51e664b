"""The scheduled template update a service carries: `.github/workflows/template-update.yml`
and the script whose commands are its steps, `scripts/template-update`.

GitHub cannot run here, so what the workflow does is proven in two halves. Fast tier,
every variant: the workflow passes actionlint (with shellcheck on its `run:` lines), runs
on a schedule and on demand, starts the servers and sets the settings of ci.yml's job,
pins its actions by commit and installs the Copier the template is tested with; each
step is one command, of the script or of uv; the script passes shellcheck and its
checks are ci.yml's, in ci.yml's order. Full tier: the script, run on a rendered and
edited PostgreSQL service whose template has a newer release, merges it, then runs
the checks green on the real database; on a service whose team changed the same line
as that release, it fails and names the file, committing nothing; a `.rej` file fails
it too. (tests/test_components.py runs the script's update for every add and remove.)
"""

import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import Rendered
from .harness import releases
from .harness.databases import admin_url, check_server
from .harness.paths import TEMPLATE_ROOT
from .harness.run import Outcome, parse_pytest_summary, run
from .test_components import answers_of, commit_all, edit_like_a_team, render
from .test_service_tooling import AUDIT, GITHUB_EXPRESSION, JINJA, REQUIRED_CHECKS, command

WORKFLOW = Path(".github/workflows/template-update.yml")
CI = Path(".github/workflows/ci.yml")
SCRIPT = Path("scripts/template-update")
TOOLS = Path(sys.executable).parent  # actionlint, shellcheck and Copier
# The settings only the update's job has: who commits the update.
COMMITTER = {"GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"}


def workflow(rendered: Rendered) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((rendered.path / WORKFLOW).read_text())
    return data


def job(data: dict[str, Any]) -> dict[str, Any]:
    jobs = data["jobs"]
    assert len(jobs) == 1, f"one job expected, found {sorted(jobs)}"
    only: dict[str, Any] = next(iter(jobs.values()))
    return only


def script_checks(text: str) -> list[str]:
    """The commands the script's `check` runs, in order, spelled as ci.yml spells them."""
    body = text.split("\ncheck() {\n", 1)[1].split("\n}\n", 1)[0]
    checks = []
    for line in body.splitlines():
        line = line.strip()
        if line.startswith("step "):
            checks.append("uv run " + line.removeprefix("step "))
        elif line.startswith("uv export ") and "| pip-audit " in line:
            checks.append(line.replace("| pip-audit ", "| uv run pip-audit "))
    return checks


# --- fast tier: what the workflow and the script say -------------------------------------


def test_the_update_workflow_passes_actionlint(variant: Rendered) -> None:
    outcome = run(
        TOOLS,
        variant.path,
        "actionlint",
        "-shellcheck",
        str(TOOLS / "shellcheck"),
        "-pyflakes=",
        "-oneline",
        str(WORKFLOW),
    )
    assert outcome.ok, outcome.output


def test_it_runs_on_a_schedule_and_on_demand_with_cis_servers(variant: Rendered) -> None:
    data = workflow(variant)
    keys: dict[Any, Any] = data
    triggers: dict[str, Any] = keys[True]  # PyYAML reads the key `on` as True
    assert set(triggers) == {"schedule", "workflow_dispatch"}, triggers
    assert triggers["schedule"] and all("cron" in entry for entry in triggers["schedule"])
    assert data["permissions"] == {"contents": "write", "pull-requests": "write"}
    update = job(data)
    ci = job(yaml.safe_load((variant.path / CI).read_text()))
    assert update.get("services") == ci.get("services")
    ci_settings = {k: v for k, v in ci["env"].items() if k != "RUFF_OUTPUT_FORMAT"}
    assert {k: v for k, v in update["env"].items() if k not in COMMITTER} == ci_settings


def test_each_step_is_one_command_of_the_script_or_of_uv(variant: Rendered) -> None:
    steps = job(workflow(variant))["steps"]
    ci_steps = job(yaml.safe_load((variant.path / CI).read_text()))["steps"]
    actions = [step["uses"] for step in steps if "uses" in step]
    assert actions == [step["uses"] for step in ci_steps if "uses" in step]
    assert all(re.fullmatch(r"[^@]+@[0-9a-f]{40}", action) for action in actions), actions
    commands = [command(step["run"]) for step in steps if "run" in step]
    assert all(len(step["run"].strip().splitlines()) == 1 for step in steps if "run" in step)
    pin = next(
        r
        for r in tomllib.loads((TEMPLATE_ROOT / "pyproject.toml").read_text())["dependency-groups"][
            "dev"
        ]
        if r.startswith("copier==")
    )
    assert commands == [
        f"uv tool install {pin}",  # the Copier the template's update tests use
        "scripts/template-update update",
        "uv sync --locked",
        "uv run scripts/template-update check",
        "scripts/template-update pull-request",
    ]


def test_the_update_workflow_braces_are_github_expressions_only(variant: Rendered) -> None:
    text = (variant.path / WORKFLOW).read_text()
    assert GITHUB_EXPRESSION.search(text)
    assert not JINJA.search(GITHUB_EXPRESSION.sub("", text))


def test_the_script_passes_shellcheck_and_checks_what_ci_checks(
    render: Callable[[str], Rendered],
) -> None:
    rendered = render("default")
    script = rendered.path / SCRIPT
    assert os.access(script, os.X_OK), "scripts/template-update is not executable"
    checked = run(TOOLS, rendered.path, "shellcheck", str(SCRIPT))
    assert checked.ok, checked.output
    ci = yaml.safe_load((rendered.path / CI).read_text())
    ci_commands = [command(s["run"]) for s in job(ci)["steps"] if "run" in s]
    assert ci_commands == REQUIRED_CHECKS
    # The install is the workflow's step; every other check of ci.yml is the script's.
    assert script_checks(script.read_text()) == [c for c in ci_commands if c != "uv sync --locked"]
    assert AUDIT in script_checks(script.read_text())


# --- full tier: the script on a rendered service ----------------------------------------


def new_release(repo: Path, tag: str, line: tuple[str, str]) -> None:
    """Commit a release of the template that changes one line of `.env.example` and adds a
    file, and tag it."""
    example = repo / "template" / ".env.example.jinja"
    old, new = line
    text = example.read_text()
    assert text.count(old) == 1, old
    example.write_text(text.replace(old, new))
    (repo / "template" / "CONTRIBUTING.md").write_text("# Contributing\n\nOpen an issue first.\n")
    releases.git(repo, "add", "-A")
    releases.git(repo, "commit", "-q", "-m", f"release {tag}")
    releases.git(repo, "tag", tag)


def script(bin_dir: Path, project: Path, *args: str, env: dict[str, str] | None = None) -> Outcome:
    """scripts/template-update as a developer runs it: the service's tools, then Copier."""
    path = f"{bin_dir}:{TOOLS}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return run(bin_dir, project, str(project / SCRIPT), *args, env={"PATH": path, **(env or {})})


LOG_LEVEL = ("LOG_LEVEL=INFO\n", "LOG_LEVEL=WARNING\n")


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A template repository whose v1.0.0 is the working tree and v1.1.0 a newer release,
    and a service rendered from v1.0.0, edited by its team and committed."""
    repo = releases.snapshot(tmp_path_factory.mktemp("template") / "repo")
    project = render(repo, tmp_path_factory.mktemp("service") / "svc", {})
    commit_all(project, "first render")
    edit_like_a_team(project)
    commit_all(project, "our changes")
    new_release(repo, "v1.1.0", LOG_LEVEL)
    return repo, project


@pytest.mark.full
def test_the_script_merges_the_latest_release_and_its_checks_pass(
    released: tuple[Path, Path],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    check_server("postgresql")
    project = Path(shutil.copytree(released[1], tmp_path / "svc", symlinks=True))
    bin_dir = venv_for(Rendered("update", project, answers_of(project)))
    outputs = tmp_path / "github-output"

    updated = script(bin_dir, project, "update", env={"GITHUB_OUTPUT": str(outputs)})

    assert updated.ok, updated.output[-5000:]
    assert "_commit: v1.1.0\n" in (project / ".copier-answers.yml").read_text()
    assert LOG_LEVEL[1] in (project / ".env.example").read_text()
    assert (project / "CONTRIBUTING.md").is_file()
    assert outputs.read_text() == "state=changed\n"
    body = script(bin_dir, project, "body")
    assert body.ok and "release v1.1.0" in body.output and "(from v1.0.0)" in body.output

    checked = script(
        bin_dir, project, "check", env={"DATABASE_URL": admin_url("postgresql", tmp_path)}
    )

    assert checked.ok, checked.output[-5000:]
    ran = [line.removeprefix("+ ") for line in checked.output.splitlines() if line.startswith("+ ")]
    assert ran == [c.removeprefix("uv run ") for c in REQUIRED_CHECKS[2:]], ran
    counts = parse_pytest_summary(checked.output)
    assert counts.passed > 0 and counts.failed == counts.errors == 0
    assert "Success: no issues found" in checked.output

    (project / "src" / "stray.py.rej").write_text("@@ -1 +1 @@\n-a\n+b\n")
    found = script(bin_dir, project, "conflicts")
    assert not found.ok and "conflict: src/stray.py.rej" in found.output


@pytest.mark.full
def test_a_conflict_fails_the_update_and_is_not_committed(
    released: tuple[Path, Path],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    project = Path(shutil.copytree(released[1], tmp_path / "svc", symlinks=True))
    example = project / ".env.example"
    example.write_text(example.read_text().replace(LOG_LEVEL[0], "LOG_LEVEL=DEBUG\n"))
    commit_all(project, "more logs")
    head = releases.git(project, "rev-parse", "HEAD")
    bin_dir = venv_for(Rendered("update", project, answers_of(project)))

    updated = script(bin_dir, project, "update", env={"GITHUB_ACTIONS": "true"})

    assert not updated.ok, updated.output
    assert "conflict: .env.example" in updated.output
    assert "::error file=.env.example::" in updated.output
    assert [line for line in updated.output.splitlines() if line.startswith("conflict: ")] == [
        "conflict: .env.example"
    ]
    assert "<<<<<<< " in example.read_text()
    assert releases.git(project, "rev-parse", "HEAD") == head, "the update committed"
    # A dirty work tree is refused before Copier runs.
    again = script(bin_dir, project, "update")
    assert not again.ok and "Commit or stash" in again.output
