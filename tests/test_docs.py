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


# -- settings: what the documentation names is what the code reads ---------------------

PACKAGE = TEMPLATE_ROOT / "template" / "src" / "{{package_name}}"
# The kit's settings (every field), then the service's own (its defaults, its fields).
CONFIG = [*sorted((PACKAGE / "kit" / "settings").glob("*.py")), PACKAGE / "settings.py.jinja"]
DEPLOY = TEMPLATE_ROOT / "template" / "{% if server_database %}deploy{% endif %}" / "k8s"
ENV_EXAMPLE = TEMPLATE_ROOT / "template" / ".env.example.jinja"
# Where settings are documented for people: the site, both READMEs, the example files.
DOCUMENTED = [
    *sorted(DOCS.rglob("*.md")),
    TEMPLATE_ROOT / "README.md",
    TEMPLATE_ROOT / "template" / "README.md.jinja",
    ENV_EXAMPLE,
    *sorted(p for p in DEPLOY.rglob("*") if p.is_file()),
]
# An upper-case name with an underscore, as settings are spelled (`DB_POOL_SIZE`).
ENV_NAME = re.compile(r"(?<![\w.$/{-])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)(?![\w(])")
# Upper-case names that are not the service's settings: other programs' variables and
# SQL's own words. A new entry here must be one of those, never a setting's old name.
NOT_SETTINGS = {
    "PROMETHEUS_MULTIPROC_DIR",  # prometheus-client's
    "AUTO_INCREMENT",
    "CURRENT_USER",
    "GET_LOCK",
    "WAIT_FOR_EXECUTED_GTID_SET",
}


def settings_fields() -> dict[str, str]:
    """Every field of the settings in any variant, upper-cased, with its default as
    written (the service's own default where its `Settings` gives one)."""
    fields: dict[str, str] = {}
    for path in CONFIG:
        source = path.read_text()
        for name, rest in re.findall(
            r"^    ([a-z_]+): [^=\n]+?(?: = (.+))?$", source, re.MULTILINE
        ):
            default = re.search(r"^Field\(default=([^,)]+)", rest)
            fields[name.upper()] = default.group(1) if default else rest
    return fields


def code_names() -> set[str]:
    """Upper-case names the template's code (not its prose) spells anywhere."""
    sources = [p for p in (TEMPLATE_ROOT / "template").rglob("*") if p.is_file()]
    sources += [p for p in (TEMPLATE_ROOT / "includes").rglob("*.py") if p.is_file()]
    names: set[str] = set()
    for path in sources:
        documentation = "README" in path.name or path == ENV_EXAMPLE
        if path.suffix in {".py", ".jinja", ".toml", ".yaml", ".yml"} and not documentation:
            names |= set(ENV_NAME.findall(path.read_text()))
    return names


def secret_files() -> set[str]:
    """`<NAME>_FILE` of each secret setting, which names the file holding it
    (kit/settings/secrets.py): a setting whose type is a `SecretStr` or a URL."""
    names: set[str] = set()
    for path in CONFIG:
        typed = re.findall(r"^    ([a-z_]+): ([^=\n]+)", path.read_text(), re.MULTILINE)
        names |= {f"{name.upper()}_FILE" for name, kind in typed if re.search("Secret|URL", kind)}
    return names


def test_every_setting_the_docs_name_exists_in_the_code() -> None:
    known = set(settings_fields()) | code_names() | NOT_SETTINGS | secret_files()
    unknown = {
        (name, str(path.relative_to(TEMPLATE_ROOT)))
        for path in DOCUMENTED
        for name in ENV_NAME.findall(path.read_text())
        if name not in known and not name.startswith("OTEL_")  # OpenTelemetry's own
    }
    assert not unknown, (
        "documented but neither a setting (kit/settings/, settings.py.jinja) nor a name in the "
        f"template's code: {sorted(unknown)}"
    )


# "`DB_POOL_RECYCLE` (180 s)", "| `DB_REPLICA_POOL_SIZE` | 10 |": a setting's default.
DOCUMENTED_DEFAULT = re.compile(
    r"`([A-Z][A-Z0-9_]+)` \((\d[\d_.]*)( s| ms)?\)|\| `([A-Z][A-Z0-9_]+)` \| (\d[\d_.]*) \|"
)


def test_a_default_the_docs_give_is_the_codes() -> None:
    fields = settings_fields()
    found = [
        (str(path.relative_to(TEMPLATE_ROOT)), name, in_units(name, value, unit))
        if name
        else (str(path.relative_to(TEMPLATE_ROOT)), row_name, row_value)
        for path in DOCUMENTED
        for name, value, unit, row_name, row_value in DOCUMENTED_DEFAULT.findall(path.read_text())
    ]
    assert any(name == "DB_POOL_RECYCLE" for _, name, _ in found), found
    wrong = [
        (page, name, value, fields[name])
        for page, name, value in found
        if name in fields and not _same(value, fields[name])
    ]
    assert not wrong, f"(page, setting, documented default, default in the code): {wrong}"


def in_units(name: str, value: str, unit: str) -> str:
    """A default as the setting counts it: "(10 s)" of a setting in milliseconds is 10000."""
    if name.endswith("_MS") and unit == " s":
        return str(float(value.replace("_", "")) * 1000)
    return value


def _same(documented: str, default: str) -> bool:
    try:
        return float(documented) == float(default.replace("_", ""))
    except ValueError:
        return documented.strip("\"'").lower() == default.strip("\"'").lower()


def test_the_example_settings_are_the_defaults() -> None:
    """`.env.example` shows the defaults (bar where the data lives and the environment),
    so copying it changes nothing until a value is edited."""
    fields = settings_fields()
    example = re.findall(r"^([A-Z][A-Z0-9_]+)=(.*)$", ENV_EXAMPLE.read_text(), re.MULTILINE)
    assert example
    differ = [
        (name, value, fields.get(name))
        for name, value in example
        if name not in {"DATABASE_URL", "REDIS_URL"}
        and not (name in fields and _same(value, fields[name]))
    ]
    assert not differ, f".env.example (name, value, default in the settings): {differ}"
