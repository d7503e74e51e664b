"""The template repository keeps its promises: the README's commands are what CI runs."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from .harness.paths import TEMPLATE_ROOT

SCRIPT = TEMPLATE_ROOT / "scripts" / "test"


def readme_commands() -> list[str]:
    text = (TEMPLATE_ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.DOTALL)


def test_readme_opens_with_the_render_and_the_test_command() -> None:
    render, test = readme_commands()[:2]
    assert "copier copy" in render
    assert test == "scripts/test"
    # The script ends in the suite itself, after its set-up.
    last = SCRIPT.read_text().rstrip().splitlines()[-1]
    assert last == 'exec .venv/bin/pytest -n 4 "$@"'
    intro = (TEMPLATE_ROOT / "README.md").read_text().split("## ")[0]
    assert render in intro and test in intro


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = readme_commands()[1]
    ci = (TEMPLATE_ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_readme_states_the_suite_wall_time() -> None:
    text = (TEMPLATE_ROOT / "README.md").read_text()
    assert re.search(r"takes about\s+\*\*\d+ (seconds|minutes?)\*\*", text)


def test_the_site_gets_started_with_exactly_the_readme_commands() -> None:
    render, test = readme_commands()[:2]
    page = (TEMPLATE_ROOT / "docs" / "getting-started.md").read_text()
    blocks = re.findall(r"```bash\n(.+?)\n```", page, flags=re.DOTALL)
    assert render in blocks and test in blocks
    # No other block on the page renders the template or runs its suite (the rendered
    # service's own `uv run pytest` is another matter).
    stale = [
        b
        for b in blocks
        if b not in (render, test) and re.search(r"copier copy|\.venv/bin/pytest", b)
    ]
    assert not stale, stale


def _cannot_act(tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """scripts/test, copied, run by a non-root user (CFS_SETUP_UID) whose PATH holds a
    Python and the shell's few tools but no database client, server or other Python."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "id"):
        (bin_dir / tool).symlink_to(shutil.which(tool) or f"/usr/bin/{tool}")
    # The interpreter itself, not a venv's or pyenv's launcher that needs its own PATH.
    (bin_dir / "python3").symlink_to(os.path.realpath(sys.executable))
    copy = tmp_path / "repo" / "scripts" / "test"
    copy.parent.mkdir(parents=True)
    shutil.copy(SCRIPT, copy)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path), "CFS_SETUP_UID": "1000"}
    env["PYENV_ROOT"] = str(tmp_path / "no-pyenv")
    return subprocess.run(
        [str(bin_dir / "bash"), str(copy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_the_test_script_lists_what_it_cannot_set_up_and_stops(tmp_path: Path) -> None:
    outcome = _cannot_act(tmp_path)

    assert outcome.returncode == 1, outcome
    assert outcome.stdout == ""
    lines = outcome.stderr.splitlines()
    assert all(line.startswith("missing: ") for line in lines), lines
    expected = ["PostgreSQL at", "MariaDB at", "Redis at", "Node.js 20+", "Python 3.12 for"]
    expected.append("Python 3.13 for")
    if not Path("/usr/sbin/pgbouncer").exists():
        expected.append("the pgbouncer binary")
    named = [[e for e in expected if line.startswith(f"missing: {e}")] for line in lines]
    assert named == [[e] for e in expected], lines
    # Each line says how to get the missing part.
    assert all("install" in line or "pyenv" in line for line in lines), lines
    # It stopped at once: no venv made, nothing installed, no test run.
    assert not (tmp_path / "repo" / ".venv").exists()


def test_every_prerequisite_the_readme_lists_is_one_the_script_checks() -> None:
    """The README's list of prerequisites and the script's `lack` lines name the same parts."""
    readme = (TEMPLATE_ROOT / "README.md").read_text()
    script = SCRIPT.read_text()
    parts = (
        "PostgreSQL",
        "MariaDB",
        "Redis",
        "pgbouncer",
        "Node.js",
        "Python 3.12",
        "3.13",
        "venv",
    )
    for part in parts:
        assert part in readme.split("## ")[0], part
    checked = re.findall(r'lack "([^"]+)"', script)
    assert len(checked) == 8, checked
