"""The template repository keeps its promises: the README's commands are what CI runs."""

import re

from .harness.paths import TEMPLATE_ROOT


def readme_commands() -> list[str]:
    text = (TEMPLATE_ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.DOTALL)


def test_readme_opens_with_the_render_and_the_test_command() -> None:
    render, test = readme_commands()[:2]
    assert "copier copy" in render
    assert test.endswith("pytest -n 2")
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
