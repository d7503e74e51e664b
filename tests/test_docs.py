"""The documentation site builds strictly and documents every question.

`mkdocs build --strict`, with the validation of `mkdocs.yml`, fails on a link to a
page or an anchor that does not exist, a link to a file the repository does not have
(`hooks/repo_links.py`) and a page left out of the navigation; the second test plants
one of each to show that it does.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from .harness.paths import TEMPLATE_ROOT

DOCS = TEMPLATE_ROOT / "docs"
SECTION = re.compile(r"^## `(\w+)`$", flags=re.MULTILINE)


def mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(root / "mkdocs.yml")]
        + ["-d", str(site)],
        capture_output=True,
        text=True,
        timeout=300,
        # Material prints a notice about MkDocs 2.0 on every build unless told not to.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )


class _CopierLoader(yaml.SafeLoader):
    """Reads copier.yml as Copier does: `--- !include file` brings that file's keys in."""


def _include(loader: _CopierLoader, node: yaml.Node) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for document in yaml.load_all((TEMPLATE_ROOT / str(node.value)).read_text(), _CopierLoader):
        merged.update(document or {})
    return merged


_CopierLoader.add_constructor("!include", _include)


def copier_questions() -> list[str]:
    """Every key of copier.yml that Copier asks: no `_setting`, no computed value."""
    questions: list[str] = []
    for document in yaml.load_all((TEMPLATE_ROOT / "copier.yml").read_text(), _CopierLoader):
        for name, spec in (document or {}).items():
            computed = isinstance(spec, dict) and spec.get("when") is False
            if not name.startswith("_") and not computed:
                questions.append(name)
    return questions


def built_page(page: Path) -> str:
    """Where MkDocs writes a page (directory URLs): `a/b.md` -> `a/b/index.html`."""
    stem = page.relative_to(DOCS).with_suffix("")
    folder = stem.parent if stem.name == "index" else stem
    return (folder / "index.html").as_posix()


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    site = tmp_path / "site"
    outcome = mkdocs_build(TEMPLATE_ROOT, site)
    assert outcome.returncode == 0, outcome.stderr
    missing = [str(p) for p in sorted(DOCS.rglob("*.md")) if not (site / built_page(p)).is_file()]
    assert not missing, f"pages not built: {missing}"


def test_a_broken_link_or_an_orphan_page_fails_the_build(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    root.mkdir()
    for entry in TEMPLATE_ROOT.iterdir():
        if entry.name not in {"docs", ".git", ".venv", "site"}:
            (root / entry.name).symlink_to(entry)
    shutil.copytree(DOCS, root / "docs")
    (root / "docs" / "orphan.md").write_text("# In no navigation\n")
    with (root / "docs" / "index.md").open("a") as index:
        index.write("\n[a](no-such-page.md) [b](questions.md#no-such-question)\n")
        index.write("[c](../template/no-such-file.py)\n")

    outcome = mkdocs_build(root, tmp_path / "site")

    assert outcome.returncode != 0
    # Each fault must be a warning (which --strict counts), not an INFO line.
    records = re.split(r"\n(?=(?:DEBUG|INFO|WARNING|ERROR)\b)", outcome.stderr)
    warnings = "\n".join(r for r in records if r.startswith("WARNING"))
    for fault in (
        "- orphan.md",
        "'no-such-page.md'",
        "'questions.md#no-such-question'",
        "'template/no-such-file.py', which is not a file of the repository",
    ):
        assert fault in warnings, outcome.stderr


def test_every_question_has_a_section_on_the_questions_page() -> None:
    questions = copier_questions()
    assert {"project_name", "database", "example_domain"} <= set(questions)
    sections = SECTION.findall((DOCS / "questions.md").read_text())
    missing = [q for q in questions if q not in sections]
    assert not missing, f"docs/questions.md has no '## `name`' section for {missing}"
    stale = [s for s in sections if s not in questions]
    assert not stale, f"docs/questions.md documents {stale}, which copier.yml does not ask"
