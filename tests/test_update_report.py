"""The releases and the "before you deploy" report a service reads after `copier update`.

- The release records agree: CHANGELOG.md's dated entries are the releases
  `tests/harness/releases.py` records (same versions, same order), the working tree is
  the release its Unreleased section names, and Copier, given a clone tagged from the
  records, updates to exactly those versions.
- The report's data (`template/.copier/releases.json`, `.copier/files.txt.jinja`,
  `includes/release.yml`) is what `scripts/release_data.py` makes of the releases now.
- A service rendered at v0.3.0, whose team deleted a template file, updated to the
  working tree (full tier): the message `copier update` prints and the service's
  `kit.update_report` give the same report, and it is right against what really changed:
  the settings each release's `Settings()` reads with an empty environment (run in its
  own venv), the migrations the update added, the CHANGELOG's upgrade steps, and the
  deleted file. The release the report starts from is the one the answers file recorded
  before the update.
"""

import functools
import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import yaml
from copier import run_copy

from .conftest import Rendered
from .harness import releases
from .harness.paths import TEMPLATE_ROOT
from .harness.run import run

COPIER = str(Path(sys.executable).parent / "copier")
ANSWERS = {"project_name": "Ledger", "author_email": "ops@example.org"}


@functools.cache
def release_data() -> ModuleType:
    """scripts/release_data.py, the generator, as a module."""
    path = TEMPLATE_ROOT / "scripts" / "release_data.py"
    spec = importlib.util.spec_from_file_location("release_data", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def data() -> dict[str, object]:
    return dict(json.loads((TEMPLATE_ROOT / "template" / ".copier" / "releases.json").read_text()))


def test_the_release_data_is_what_the_generator_makes_now() -> None:
    """Settings, migrations or CHANGELOG.md changed without `python scripts/release_data.py`
    fails here (it renders every release, about ten renders)."""
    generator = release_data()
    source = (TEMPLATE_ROOT / "scripts" / "release_data.py").read_bytes()
    kept = json.loads(generator.SNAPSHOTS.read_text())
    assert kept["generator"] == hashlib.sha256(source).hexdigest(), (
        "scripts/release_snapshots.json was made by another release_data.py: "
        "run `python scripts/release_data.py`"
    )
    built, version = generator.build(keep=False)
    assert (TEMPLATE_ROOT / "includes" / "release.yml").read_text() == version
    assert generator.DATA.read_text() == generator.serialized(built), (
        "template/.copier/releases.json is stale: run `python scripts/release_data.py`"
    )
    assert generator.FILES.read_text() == generator.manifest()


def test_changelog_records_and_copier_agree_on_the_releases(tmp_path: Path) -> None:
    changelog = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    entries = release_data().changelog_entries(changelog)
    dated = [entry for entry in entries if entry.date is not None]
    recorded = [r.tag for r in releases.RELEASES]
    newest = entries[0]
    # The working tree is the release Unreleased names, or, on the commit that makes a
    # release, the dated entry it adds (recorded once that commit exists).
    assert newest.version == releases.next_release()
    if newest.date is not None and newest.version not in recorded:
        dated = dated[1:]
    # Every other dated entry is a recorded release, oldest first, and the other way round.
    assert [entry.version for entry in reversed(dated)] == recorded
    for entry in dated:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", entry.date or ""), entry
    assert [e.date for e in reversed(dated)] == sorted(e.date or "" for e in dated)

    def number(tag: str) -> tuple[int, ...]:
        return tuple(int(part) for part in tag.lstrip("v").split("."))

    assert number(newest.version) > number(releases.RELEASES[-1].tag)
    # The data every service carries lists the same releases, with the recorded commits.
    commits = {r.tag: r.commit for r in releases.RELEASES}
    assert data()["release"] == newest.version
    assert data()["releases"] == [
        {"version": e.version, "date": e.date, "commit": commits.get(e.version)}
        for e in reversed(entries)
    ]
    # Copier's view: a clone tagged from the records updates a service of the first
    # release to the newest recorded one; with the working tree committed on top, to the
    # release Unreleased names.
    for with_working_tree, expected in ((False, recorded[-1]), (True, newest.version)):
        workdir = tmp_path / f"clone-{with_working_tree}"
        workdir.mkdir()
        built = releases.build(workdir, with_working_tree=with_working_tree)
        project = tmp_path / f"svc-{with_working_tree}"
        first = releases.RELEASES[0]
        run_copy(
            str(built.repo), project, data=ANSWERS, defaults=True, vcs_ref=first.tag, quiet=True
        )
        releases.git(project, "init", "-q", "-b", "main")
        releases.git(project, "add", "-A")
        releases.git(project, "commit", "-q", "-m", "first render")
        seen = releases.check_update(project)
        assert seen["update_available"] is True
        assert f"v{str(seen['latest_version']).lstrip('v')}" == expected


def test_the_report_starts_at_the_recorded_release_and_crosses_each_later_one() -> None:
    """From each recorded release the report holds the upgrade steps of every later
    release (the CHANGELOG's), and none of its own or earlier ones."""
    everything = data()
    order = [str(r["version"]) for r in everything["releases"]]  # type: ignore[index]
    reports = everything["reports"]  # type: ignore[index]
    for database, by_release in reports.items():
        for old, text in by_release.items():
            crossed = order[order.index(old) + 1 :]
            headings = re.findall(r"^### Upgrade steps of (v[\d.]+)", text, re.MULTILINE)
            assert headings == crossed, (database, old, headings)


@pytest.fixture(scope="module")
def template_releases(tmp_path_factory: pytest.TempPathFactory) -> releases.Releases:
    return releases.build(tmp_path_factory.mktemp("releases"))


def commit_all(project: Path, message: str) -> None:
    releases.git(project, "add", "-A")
    releases.git(project, "commit", "-q", "--allow-empty", "-m", message)


def copier_update(project: Path, ref: str) -> str:
    """`copier update` as a user runs it (no --trust); what it printed."""
    out = subprocess.run(
        [
            COPIER,
            "update",
            "--defaults",
            "--skip-answered",
            "--conflict",
            "inline",
            "--vcs-ref",
            ref,
            str(project),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stderr


# Run in a service's venv with `src` on the path: every setting its `Settings` reads, as
# `Settings()` makes it from an empty environment and no `.env`, the values as text.
EFFECTIVE = """
import importlib, json, sys
module = importlib.import_module(sys.argv[1])
only_on = {}
try:
    only_on = importlib.import_module(sys.argv[2] + ".kit.settings.database")._ONLY_ON
except ImportError:
    pass
settings = module.Settings()
backend = sys.argv[3]
found = {}
for name, field in type(settings).model_fields.items():
    if getattr(field.annotation, "__name__", "") == "NotHere":
        continue
    if name in only_on and backend not in only_on[name][0]:
        continue
    value = getattr(settings, name)
    secret = getattr(value, "get_secret_value", None)
    found[(field.validation_alias or name).upper()] = repr(secret() if secret else value)
print(json.dumps(found))
"""


def effective_settings(bin_dir: Path, project: Path, module: str, database: str) -> dict[str, str]:
    package = str(yaml.safe_load((project / ".copier-answers.yml").read_text())["package_name"])
    empty = project.parent / f"empty-{project.name}"
    empty.mkdir(exist_ok=True)
    outcome = run(
        bin_dir,
        empty,
        "python",
        "-c",
        EFFECTIVE,
        f"{package}.{module}",
        package,
        database,
        env={"PYTHONPATH": str(project / "src")},
    )
    assert outcome.ok, outcome.output[-3000:]
    return dict(json.loads(outcome.output.strip().splitlines()[-1]))


def listed(report: str, title: str) -> set[str]:
    """The setting names of one of the report's sections that concern a service with no
    option on (a line only for services with an option says so)."""
    section = report.split(f"### {title}", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(r"^- `([A-Z0-9_]+)`(.*)$", section, re.MULTILINE)
    return {name for name, rest in rows if "(services with: " not in rest}


@pytest.mark.full
def test_an_update_reports_what_really_changed(
    template_releases: releases.Releases,
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    old, database = "v0.3.0", "postgresql"
    project = tmp_path / "svc"
    run_copy(
        str(template_releases.repo),
        project,
        data={**ANSWERS, "database": database},
        defaults=True,
        vcs_ref=old,
        quiet=True,
    )
    releases.git(project, "init", "-q", "-b", "main")
    commit_all(project, "first render")
    before = {p.name for p in (project / "migrations" / "versions").glob("*.py")}
    old_answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    old_settings = effective_settings(
        venv_for(Rendered(old, project, old_answers)), project, "core.config", database
    )
    # The team does not use compose: it deleted the file, so Copier stops updating it.
    (project / "compose.yaml").unlink()
    commit_all(project, "we deploy without compose")

    printed = copier_update(project, template_releases.new)
    command = subprocess.run(
        [sys.executable, str(project / "src" / "ledger" / "kit" / "update_report.py")],
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    expected = data()["reports"][database][old]  # type: ignore[index]
    new = template_releases.new
    assert f"Before you deploy: from {old} to {new} ({database})." in printed
    assert expected in printed, printed[-3000:]
    assert f"From **{old}** to **{new}** ({database})." in command
    assert expected in command
    deleted = command.split("### Template files this service deleted", 1)[1]
    assert re.findall(r"^- `(.+)`$", deleted, re.MULTILINE) == ["compose.yaml"]
    assert not (project / "compose.yaml").exists()

    # The settings, as each release's own code reads them.
    new_answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    new_settings = effective_settings(
        venv_for(Rendered("updated", project, new_answers)), project, "settings", database
    )
    assert listed(expected, "Settings added") == set(new_settings) - set(old_settings)
    assert listed(expected, "Settings removed") == set(old_settings) - set(new_settings)
    changed = {
        n for n in set(old_settings) & set(new_settings) if old_settings[n] != new_settings[n]
    }
    reported = listed(expected, "Changed defaults: pool") | listed(
        expected, "Changed defaults: other"
    )
    assert reported == changed, (reported, {n: (old_settings[n], new_settings[n]) for n in changed})
    # The migrations the update brought.
    added = {p.name for p in (project / "migrations" / "versions").glob("*.py")} - before
    section = expected.split("### Migrations the template added", 1)[1].split("\n### ", 1)[0]
    rows = re.findall(
        r"^- `(\S+)` \(revision `(\w+)`(?:; services answering (\w+=\w+(?: and \w+=\w+)*))?\)",
        section,
        re.MULTILINE,
    )

    def answered(needs: str) -> bool:
        """Whether the service's answers meet "jobs=true and example_domain=true"."""
        pairs = (pair.split("=") for pair in needs.split(" and ") if needs)
        return all(str(new_answers[name]).lower() == value for name, value in pairs)

    assert {name for name, _, needs in rows if answered(needs)} == added
    for name, revision, _ in rows:
        if name in added:
            text = (project / "migrations" / "versions" / name).read_text()
            assert re.search(rf"^revision(?:: str)? = ['\"]{revision}['\"]", text, re.MULTILINE)
    # The upgrade steps: the CHANGELOG's for the one release crossed.
    changelog = (TEMPLATE_ROOT / "CHANGELOG.md").read_text()
    upgrading = changelog.split(f"### Upgrading from {old}\n", 1)[1].split("\n| ", 1)[0]
    first_step = upgrading.split("\n1. ", 1)[1].split("\n2. ", 1)[0]
    assert re.findall(r"^### Upgrade steps of (\S+)", expected, re.MULTILINE) == [new]
    assert f"1. {first_step}" in expected
    assert new_answers["template_release"] == new

    # The release the report starts at is the one the answers file held before the
    # update: the service says it is at v0.2.0, and the report crosses v0.3.0 too.
    commit_all(project, f"update to {new}")
    answers_file = project / ".copier-answers.yml"
    answers_file.write_text(
        answers_file.read_text().replace(f"template_release: {new}", "template_release: v0.2.0")
    )
    commit_all(project, "say v0.2.0")
    printed = copier_update(project, new)
    assert f"Before you deploy: from v0.2.0 to {new} ({database})." in printed
    assert "### Upgrade steps of v0.3.0" in printed
    commit_all(project, "again")
    assert "No release crossed" in copier_update(project, new)


def test_the_report_names_renames_and_the_services_a_line_concerns() -> None:
    """A setting that reads its old name too (`AliasChoices("NEW", "OLD")` in the code)
    is reported renamed, neither added nor removed; a line that holds for some
    configurations says for which."""
    generator = release_data()
    alias = generator.ALIAS
    old = {
        "settings": {
            "none": {"DB_POOL_SIZE": "30", "GONE": "1"},
            "cache": {"DB_POOL_SIZE": "30", "GONE": "1", "CACHE_TTL": "300"},
        },
        "migrations": [],
    }
    new = {
        "settings": {
            "none": {
                "DB_READ_POOL_SIZE": "30",
                "DB_POOL_SIZE": f"{alias}DB_READ_POOL_SIZE",
                "CACHE_TTL": "300",
            },
            "cache": {
                "DB_READ_POOL_SIZE": "30",
                "DB_POOL_SIZE": f"{alias}DB_READ_POOL_SIZE",
                "CACHE_TTL": "60",
            },
        },
        "migrations": [{"file": "a.py", "revision": "abc", "needs": ""}],
    }
    text = generator.report(old, new, [("v9.0.0", "Do this.")])
    assert "- `DB_POOL_SIZE` -> `DB_READ_POOL_SIZE`\n" in text
    assert listed(text, "Settings added") == {"CACHE_TTL"}
    assert "- `CACHE_TTL` = `300` (services without: cache)" in text
    assert listed(text, "Settings removed") == {"GONE"}
    assert "- `CACHE_TTL`: `300` -> `60` (services with: cache)" in text
    assert "- `a.py` (revision `abc`)" in text
    assert text.endswith("### Upgrade steps of v9.0.0 (CHANGELOG.md)\n\nDo this.\n")
