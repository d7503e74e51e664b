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
