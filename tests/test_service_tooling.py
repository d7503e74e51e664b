"""The rendered service's own tooling: its CI workflow, its pre-commit hooks, its lock file.

Fast tier, every variant: the workflow passes actionlint, starts the chosen database and
runs exactly the commands the service's README lists; the pre-commit configuration is
valid and every hook's tool comes from the service's dev group; the lock is the user's.
Full tier, the default variant: a copy is locked (`uv lock`), installed from the lock into
a fresh venv (`uv sync --locked`) and passes its own suite and `pre-commit run
--all-files`; the Dockerfile's install step installs the lock and refuses a stale one.
"""

import os
import re
import shutil
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from uv import find_uv_bin

from .conftest import Rendered
from .harness.advisories import (
    VULNERABLE_PIN,
    findings,
    report,
    require_the_advisory_service,
    unaudited,
)
from .harness.databases import admin_url, check_server
from .harness.paths import TEMPLATE_ROOT
from .harness.releases import git
from .harness.run import Outcome, parse_pytest_summary, run
from .harness.venv import find_python

WORKFLOW = Path(".github/workflows/ci.yml")
PRE_COMMIT_CONFIG = Path(".pre-commit-config.yaml")
# The tools the template repository's dev group installs next to the running Python.
TOOLS = Path(sys.executable).parent
UV_BIN = Path(find_uv_bin()).parent
# What CI must run, whatever else it runs (issue 15): each a command of the workflow.
AUDIT = (
    "uv export --frozen --no-emit-project | uv run pip-audit --strict --disable-pip -r /dev/stdin"
)
REQUIRED_CHECKS = [
    "uv sync --locked",
    AUDIT,
    "uv run ruff check .",
    "uv run ruff format --check .",
    "uv run mypy --strict",
    "uv run alembic upgrade head",
    "uv run alembic check",
    "uv run pytest",
]
GITHUB_EXPRESSION = re.compile(r"\$\{\{.*?\}\}")
JINJA = re.compile(r"\{\{|\{%|\{#")
DATABASE_IMAGES = {"postgresql": "postgres:", "mysql": "mariadb:"}
# How this machine reaches the package index: certificates, proxies, uv's index settings.
NETWORK_SETTINGS = re.compile(
    r"SSL_CERT_(FILE|DIR)|(HTTPS?|ALL|NO)_PROXY"
    r"|UV_(DEFAULT_INDEX|INDEX|INDEX_URL|EXTRA_INDEX_URL|NATIVE_TLS|INSECURE_HOST)",
    re.IGNORECASE,
)


# --- reading what the render says ------------------------------------------------------


def command(line: str) -> str:
    """A shell line without its trailing comment, its spaces normalised."""
    return " ".join(re.split(r"\s+#", line, maxsplit=1)[0].split())


def workflow_commands(text: str) -> list[str]:
    """Every command of every `run:` step, in order."""
    commands = []
    for job in yaml.safe_load(text)["jobs"].values():
        for step in job["steps"]:
            commands += [command(line) for line in step.get("run", "").splitlines()]
    return [c for c in commands if c]


def readme_commands(text: str, heading: str) -> list[str]:
    """The commands of the bash blocks in one `## heading` section, in order."""
    match = re.search(
        rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.MULTILINE | re.DOTALL
    )
    assert match, f"the README has no '## {heading}' section"
    blocks = re.findall(r"^```bash\n(.*?)^```", match.group(1), re.MULTILINE | re.DOTALL)
    return [c for block in blocks for c in map(command, block.splitlines()) if c]


def drift(workflow_text: str, readme_text: str) -> dict[str, set[str]]:
    """What one of the two names and the other does not (empty: they agree)."""
    in_ci = set(workflow_commands(workflow_text))
    in_readme = set(readme_commands(readme_text, "Continuous integration"))
    return {
        "in the workflow only": in_ci - in_readme,
        "in the README only": in_readme - in_ci,
    }


def workflow(rendered: Rendered) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((rendered.path / WORKFLOW).read_text())
    return data


def the_job(rendered: Rendered) -> dict[str, Any]:
    jobs = workflow(rendered)["jobs"]
    assert len(jobs) == 1, f"one job expected, found {sorted(jobs)}"
    job: dict[str, Any] = next(iter(jobs.values()))
    return job


def hooks(rendered: Rendered) -> list[dict[str, Any]]:
    config = yaml.safe_load((rendered.path / PRE_COMMIT_CONFIG).read_text())
    return [hook for repo in config["repos"] for hook in repo["hooks"]]


# --- the CI workflow -------------------------------------------------------------------


def test_ci_workflow_passes_actionlint(variant: Rendered) -> None:
    """actionlint checks the syntax, expressions, actions' inputs and (with shellcheck)
    the `run:` scripts."""
    outcome = run(
        TOOLS,
        variant.path,
        "actionlint",
        "-shellcheck",
        str(TOOLS / "shellcheck"),
        "-pyflakes=",  # no `shell: python` steps
        "-oneline",
        str(WORKFLOW),
    )
    assert outcome.ok, outcome.output


def test_ci_runs_the_commands_the_readme_lists(variant: Rendered) -> None:
    ci_text = (variant.path / WORKFLOW).read_text()
    readme_text = (variant.path / "README.md").read_text()
    assert drift(ci_text, readme_text) == {
        "in the workflow only": set(),
        "in the README only": set(),
    }
    # The README promises this order ("in this order"), and CI must run every check.
    commands = workflow_commands(ci_text)
    assert commands == readme_commands(readme_text, "Continuous integration")
    assert commands == REQUIRED_CHECKS


def test_a_drifted_workflow_or_readme_is_caught(render: Callable[[str], Rendered]) -> None:
    """The comparison above can fail: a command changed on either side shows up."""
    rendered = render("default")
    ci_text = (rendered.path / WORKFLOW).read_text()
    readme_text = (rendered.path / "README.md").read_text()
    assert "run: uv run alembic check\n" in ci_text
    renamed = ci_text.replace("run: uv run alembic check\n", "run: uv run alembic current\n")
    assert drift(renamed, readme_text) == {
        "in the workflow only": {"uv run alembic current"},
        "in the README only": {"uv run alembic check"},
    }
    assert "\nuv run mypy --strict\n" in readme_text
    dropped = readme_text.replace("\nuv run mypy --strict\n", "\n")
    assert drift(ci_text, dropped) == {
        "in the workflow only": {"uv run mypy --strict"},
        "in the README only": set(),
    }


def test_ci_audits_the_locked_dependencies(variant: Rendered) -> None:
    """Right after the install, pip-audit reads the lock's exact versions (hashed, so
    without pip) and fails on a known vulnerability or on a package it could not audit."""
    steps = [step.get("run", "") for step in the_job(variant)["steps"]]
    assert command(steps[steps.index("uv sync --locked") + 1]) == AUDIT
    # `shell: bash` is GitHub's `bash -eo pipefail`: an export that fails fails the step,
    # instead of pip-audit passing on no input (the default shell has no pipefail).
    assert workflow(variant)["defaults"] == {"run": {"shell": "bash"}}
    pyproject = tomllib.loads((variant.path / "pyproject.toml").read_text())
    assert any(r.startswith("pip-audit>=") for r in pyproject["dependency-groups"]["dev"])


def test_ci_starts_the_chosen_database(variant: Rendered) -> None:
    database = variant.answers["database"]
    job = the_job(variant)
    url = urlsplit(job["env"]["DATABASE_URL"])
    drivers = {"postgresql": "postgresql+asyncpg", "mysql": "mysql+asyncmy"}
    assert url.scheme == drivers.get(database, "sqlite+aiosqlite")
    services = dict(job.get("services", {}))
    if variant.answers["cache"]:
        redis = services.pop("redis")
        compose = yaml.safe_load((variant.path / "compose.yaml").read_text())
        assert redis["image"] == compose["services"]["redis"]["image"]
        redis_url = urlsplit(job["env"]["REDIS_URL"])
        assert redis["ports"] == [f"{redis_url.port}:{redis_url.port}"]
        assert redis_url.hostname == "127.0.0.1"
        assert "--health-cmd" in redis["options"], "steps must wait until Redis answers"
    else:
        assert "REDIS_URL" not in job["env"]
    if database == "sqlite":
        assert services == {}
        return
    assert list(services) == ["db"]
    db = services["db"]
    compose = yaml.safe_load((variant.path / "compose.yaml").read_text())
    assert db["image"] == compose["services"]["db"]["image"]
    assert db["image"].startswith(DATABASE_IMAGES[database])
    assert db["ports"] == [f"{url.port}:{url.port}"]
    assert url.hostname == "127.0.0.1"
    assert "--health-cmd" in db["options"], "steps must wait until the server is ready"
    if database == "postgresql":
        assert db["env"]["POSTGRES_DB"] == url.path.removeprefix("/")
        assert db["env"]["POSTGRES_PASSWORD"] == url.password
        assert url.username == "postgres"
    else:
        assert db["env"]["MARIADB_DATABASE"] == url.path.removeprefix("/")
        assert db["env"]["MARIADB_ROOT_PASSWORD"] == url.password
        assert url.username == "root"


def test_ci_installs_with_uv_on_the_services_python(variant: Rendered) -> None:
    steps = the_job(variant)["steps"]
    actions = [step["uses"] for step in steps if "uses" in step]
    assert [a.split("@")[0] for a in actions] == ["actions/checkout", "astral-sh/setup-uv"]
    # Pinned by commit: a moved tag cannot change what runs.
    assert all(re.fullmatch(r"[^@]+@[0-9a-f]{40}", a) for a in actions), actions
    setup_uv = next(s for s in steps if s.get("uses", "").startswith("astral-sh/setup-uv@"))
    assert setup_uv["with"]["python-version"] == variant.python_version
    # The uv of the Dockerfile, so CI and the image read the lock alike.
    dockerfile = (variant.path / "Dockerfile").read_text()
    image_uv = re.search(r"ghcr\.io/astral-sh/uv:(\d+\.\d+)", dockerfile)
    assert image_uv, "the Dockerfile names no uv image"
    assert setup_uv["with"]["version"] == f"{image_uv.group(1)}.x"


def test_ci_workflow_braces_are_github_expressions_only(variant: Rendered) -> None:
    """tests/test_render.py exempts ci.yml from its Jinja check; this is that check."""
    text = (variant.path / WORKFLOW).read_text()
    assert GITHUB_EXPRESSION.search(text), "the exemption is no longer needed"
    assert not JINJA.search(GITHUB_EXPRESSION.sub("", text))


# --- pre-commit ------------------------------------------------------------------------


def test_pre_commit_config_is_valid(variant: Rendered) -> None:
    outcome = run(TOOLS, variant.path, "pre-commit", "validate-config", str(PRE_COMMIT_CONFIG))
    assert outcome.ok, outcome.output
    assert outcome.output == "", f"warnings: {outcome.output}"


def test_pre_commit_hooks_run_the_dev_groups_tools(
    variant: Rendered, venv_for: Callable[[Rendered], Path]
) -> None:
    """Hooks are local and run tools the dev group installs: nothing to fetch from GitHub."""
    config = yaml.safe_load((variant.path / PRE_COMMIT_CONFIG).read_text())
    assert {repo["repo"] for repo in config["repos"]} == {"local"}
    ids = {hook["id"] for hook in hooks(variant)}
    assert {"ruff-check", "ruff-format", "trailing-whitespace", "end-of-file-fixer"} <= ids
    bin_dir = venv_for(variant)  # the dev group of this render, installed
    for hook in hooks(variant):
        words = hook["entry"].split()
        if words[:2] == ["uv", "lock"]:
            continue
        assert words[:3] == ["uv", "run", "--frozen"], hook
        assert (bin_dir / words[3]).is_file(), f"{hook['id']}: no {words[3]} in the dev group"


# --- the lock --------------------------------------------------------------------------


class CopierSettingsLoader(yaml.SafeLoader):
    """Reads copier.yml's settings; its `!include` tags read as nothing."""


CopierSettingsLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def test_the_lock_is_the_services_own(variant: Rendered) -> None:
    """The template renders no uv.lock, and an update never writes one."""
    assert not (variant.path / "uv.lock").exists()
    copier_yml = (TEMPLATE_ROOT / "copier.yml").read_text()
    settings = next(yaml.load_all(copier_yml, Loader=CopierSettingsLoader))
    assert "uv.lock" in settings["_skip_if_exists"]


# --- full tier: a locked render --------------------------------------------------------


@dataclass
class Locked:
    path: Path
    env: dict[str, str]

    def uv(self, *args: str, cwd: Path | None = None) -> Outcome:
        return run(UV_BIN, cwd or self.path, "uv", *args, env=self.env)


@pytest.fixture(scope="module")
def locked(render: Callable[[str], Rendered], tmp_path_factory: pytest.TempPathFactory) -> Locked:
    """The default render, locked and synced into its own fresh venv, in a git repository."""
    rendered = render("default")
    path = tmp_path_factory.mktemp("locked") / rendered.path.name
    shutil.copytree(rendered.path, path)
    env = {
        **{k: v for k, v in os.environ.items() if NETWORK_SETTINGS.fullmatch(k)},
        # uv (and so `uv run` in the hooks) from the template's dev group.
        "PATH": f"{UV_BIN}:/usr/bin:/bin",
        # uv's cache outlives the run: the second lock and sync cost next to nothing.
        "UV_CACHE_DIR": str(Path.home() / ".cache" / "uv"),
        "UV_PYTHON": find_python(rendered.python_version),
        "UV_PYTHON_DOWNLOADS": "never",
        "PRE_COMMIT_HOME": str(path.parent / "pre-commit-home"),
    }
    service = Locked(path, env)
    for args in (["lock"], ["sync", "--locked"]):
        outcome = service.uv(*args)
        assert outcome.ok, f"uv {' '.join(args)}:\n{outcome.output}"
    assert (path / "uv.lock").is_file()
    assert (path / ".venv" / "bin" / "python").is_file()
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "A locked render")
    return service


def locked_versions(lock: Path) -> dict[str, str]:
    packages = tomllib.loads(lock.read_text())["package"]
    return {p["name"]: p["version"] for p in packages if "version" in p}


@pytest.mark.full
def test_a_locked_render_passes_its_own_suite(locked: Locked, tmp_path: Path) -> None:
    check = locked.uv("sync", "--locked", "--check")
    assert check.ok, f"the venv is not exactly the lock:\n{check.output}"
    check_server("postgresql")  # fails with how-to-start instructions when it is down
    outcome = run(
        UV_BIN,
        locked.path,
        "uv",
        "run",
        "--locked",
        "pytest",
        "-p",
        "no:cacheprovider",
        env={**locked.env, "DATABASE_URL": admin_url("postgresql", tmp_path)},
    )
    counts = parse_pytest_summary(outcome.output)
    assert outcome.ok, outcome.output[-5000:]
    assert counts.passed > 0, outcome.output[-2000:]
    assert counts.failed == counts.errors == counts.skipped == 0


@pytest.mark.full
def test_pre_commit_passes_on_a_render_and_catches_a_bad_change(locked: Locked) -> None:
    outcome = locked.uv("run", "--frozen", "pre-commit", "run", "--all-files")
    assert outcome.ok, outcome.output
    assert "Skipped" not in outcome.output, outcome.output
    assert git(locked.path, "status", "--porcelain") == "", "a hook changed a rendered file"
    # The hooks bite: whitespace, lint and formatting are fixed, and the run fails.
    readme = locked.path / "README.md"
    scratch = next((locked.path / "src").iterdir()) / "scratch.py"
    try:
        readme.write_text(readme.read_text() + "trailing   \n")
        scratch.write_text('"""Scratch."""\n\nimport os\n\nvalue=( 1 )\n')
        git(locked.path, "add", "-A")
        bad = locked.uv("run", "--frozen", "pre-commit", "run", "--all-files")
        assert not bad.ok, bad.output
        for hook in ("trailing-whitespace", "ruff-check", "ruff-format"):
            assert f"- hook id: {hook}\n" in bad.output, bad.output
        assert readme.read_text().endswith("trailing\n")
        assert scratch.read_text() == '"""Scratch."""\n\nvalue = 1\n'
    finally:
        git(locked.path, "reset", "-q", "--hard")
        git(locked.path, "clean", "-q", "-f")


@pytest.mark.full
@pytest.mark.advisories
def test_the_ci_audit_fails_on_a_lock_with_a_vulnerable_pin(locked: Locked, tmp_path: Path) -> None:
    """The workflow's audit command, as CI runs it, on the locked render with one
    dependency pinned to a version that has a published advisory."""
    name, version, advisory = VULNERABLE_PIN
    project = tmp_path / locked.path.name
    shutil.copytree(locked.path, project, ignore=shutil.ignore_patterns(".venv", ".git"))
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = [\n", f'dependencies = [\n    "{name}=={version}",\n', 1
        )
    )
    relocked = locked.uv("lock", cwd=project)
    assert relocked.ok, relocked.output
    assert locked_versions(project / "uv.lock")[name] == version
    (audit,) = [c for c in workflow_commands((project / WORKFLOW).read_text()) if "pip-audit" in c]
    shell = audit.replace("pip-audit ", f"pip-audit -f json -o {tmp_path / 'report.json'} ", 1)
    # pip-audit's HTTP client (requests) trusts its own CA bundle, not SSL_CERT_FILE: a
    # machine that reaches PyPI through a certificate authority of its own names it there.
    env = dict(locked.env)
    if "SSL_CERT_FILE" in env:
        env["REQUESTS_CA_BUNDLE"] = env["SSL_CERT_FILE"]
    # `uv run` syncs a venv of the copy's own, as CI's checkout has.
    outcome = run(Path("/bin"), project, "bash", "-eo", "pipefail", "-c", shell, env=env)
    # Vulnerable or not audited at all: never a pass.
    assert not outcome.ok, outcome.output
    assert "could not be audited" in outcome.output or "Found " in outcome.output, outcome.output
    require_the_advisory_service()
    dependencies = report(tmp_path / "report.json")
    assert unaudited(dependencies) == []
    assert advisory in findings(dependencies).get(f"{name}=={version}", set()), outcome.output


def docker_install_step(dockerfile: str) -> str:
    """The shell of the Dockerfile's RUN instruction that installs the service."""
    joined = dockerfile.replace("\\\n", " ")
    runs = [line[len("RUN ") :] for line in joined.splitlines() if line.startswith("RUN ")]
    steps = [script for script in runs if "uv.lock" in script]
    assert len(steps) == 1, runs
    return steps[0]


@pytest.mark.full
def test_the_docker_install_step_installs_the_lock(locked: Locked, tmp_path: Path) -> None:
    step = docker_install_step((locked.path / "Dockerfile").read_text())
    # The build stage's environment, with the image's /venv moved somewhere writable.
    env = {**locked.env, "UV_LINK_MODE": "copy", "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv")}
    outcome = run(Path("/bin"), locked.path, "sh", "-c", step, env=env)
    assert outcome.ok, outcome.output
    site = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    installed = {
        dist.name.removesuffix(".dist-info").rsplit("-", 1)[0].lower().replace("_", "-"): (
            dist.name.removesuffix(".dist-info").rsplit("-", 1)[1]
        )
        for dist in site.glob("*.dist-info")
    }
    lock = locked_versions(locked.path / "uv.lock")
    for name in ("fastapi", "sqlalchemy", "asyncpg", "pydantic", "uvicorn"):
        assert installed[name] == lock[name], name
    assert "pytest" not in installed and "ruff" not in installed, "the dev group is not shipped"
    package = next(p.name for p in (locked.path / "src").iterdir())
    assert (site / package / "main.py").is_file(), "the service itself, not an editable link"

    # A lock that no longer matches pyproject.toml stops the build.
    stale = tmp_path / "stale"
    shutil.copytree(locked.path, stale, ignore=shutil.ignore_patterns(".venv", ".git"))
    pyproject = stale / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace(
            "dependencies = [\n", 'dependencies = [\n    "anyio>=4",\n', 1
        )
    )
    refused = run(
        Path("/bin"),
        stale,
        "sh",
        "-c",
        step,
        env={**env, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "stale-venv")},
    )
    assert not refused.ok, refused.output
    assert "--locked" in refused.output, refused.output
