"""Write the "before you deploy" data every service carries: `template/.copier-releases.json`.

Run it from the template's root after changing settings, migrations or CHANGELOG.md:

    python scripts/release_data.py          # rewrite the data files
    python scripts/release_data.py --check  # exit 1 if they are out of date

It renders every release recorded in `tests/harness/releases.py` (from its commit) and the
working tree (as the release CHANGELOG.md's Unreleased section names) once per database,
with every option on, and reads from each render:

- the settings: every field of the service's `Settings` class and the classes it extends
  (the environment variable that sets it, and its default as the code writes it);
- the migrations the template ships (file, revision, and the answer a file needs);

and from the working tree's CHANGELOG.md each release's upgrade steps. From those it
writes, for each database and each older release, the report of what can break a
deployment when a service updates from that release to the working tree's; and
`includes/release.yml`, the working tree's version as Copier's `template_version`.
A service's `copier update` prints its part (`_message_after_update`), and
`python -m <package>.kit.update_report` prints the same and the template files the
service deleted.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
import tempfile
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness.releases import RELEASES

DATA = ROOT / "template" / ".copier" / "releases.json"
FILES = ROOT / "template" / ".copier" / "files.txt.jinja"
ANSWERS_FILE = "template/{{_copier_conf.answers_file}}.jinja"
VERSION_FILE = ROOT / "includes" / "release.yml"
# What the recorded releases' renders gave (they never change): the working tree alone is
# rendered on each run while this script is unchanged.
SNAPSHOTS = ROOT / "scripts" / "release_snapshots.json"
DATABASES = ("postgresql", "mysql", "sqlite")
# The answers every render gets (names the report shows as placeholders), the example
# domain on so that its migrations are read; then each option that adds settings is
# rendered once on its own, besides a render with none.
PACKAGE, SLUG = "your_service", "your-service"
ANSWERS: dict[str, object] = {
    "project_name": "Your Service",
    "project_slug": SLUG,
    "package_name": PACKAGE,
    "example_domain": True,
    "soft_delete": True,
    "cache": False,
    "tracing": False,
    "jobs": False,
}
OPTIONS = ("cache", "tracing", "jobs")
# A configuration: no option ("none") or one option on.
NONE = "none"
# Settings whose default change can break a deployment in its own way: the pool, timeouts
# and limits are reported in a section of their own.
SENSITIVE = re.compile(r"POOL|OVERFLOW|TIMEOUT|_MS$|SECONDS|MAX_|LIMIT|ATTEMPTS|BUDGET|RESERVE")
HEADING = re.compile(
    r"^## (?:(?P<unreleased>Unreleased)|(?P<version>v\d+\.\d+\.\d+) \((?P<date>[\d-]+)\))$"
)
NEXT = re.compile(r"^This release is (v\d+\.\d+\.\d+)\.$", re.MULTILINE)


@dataclass(frozen=True)
class Entry:
    """A release's CHANGELOG entry: its version, date (None: unreleased) and text."""

    version: str
    date: str | None
    text: str


def changelog_entries(changelog: str) -> list[Entry]:
    """The CHANGELOG's entries, newest first; Unreleased under the version it names."""
    entries: list[Entry] = []
    current: tuple[str, str | None] | None = None
    lines: list[str] = []
    for line in [*changelog.splitlines(), "## v0.0.0 (0000-00-00)"]:
        match = HEADING.match(line)
        if not match and not line.startswith("## "):
            lines.append(line)
            continue
        if current is not None and current[1] != "0000-00-00":
            entries.append(Entry(current[0], current[1], "\n".join(lines).strip("\n")))
        lines = []
        if match is None:
            raise SystemExit(f"CHANGELOG.md: a release heading is not `## vX.Y.Z (date)`: {line}")
        if match["unreleased"]:
            body = changelog.split("\n## Unreleased\n", 1)[1].split("\n## ", 1)[0]
            named = NEXT.search(body)
            if not named:
                raise SystemExit("CHANGELOG.md: Unreleased does not say `This release is vX.Y.Z.`")
            current = (named[1], None)
        else:
            current = (match["version"], match["date"])
    return entries


def upgrade_steps(entry: Entry) -> str:
    """What a release asks of a team that updates: its `### Upgrading...` sections (up to
    their tables, which the CHANGELOG keeps), or else its paragraphs that begin
    `Updating`."""
    sections = re.findall(
        r"^### Upgrading[^\n]*\n(.*?)(?=^### |\Z)", entry.text, re.MULTILINE | re.DOTALL
    )
    if sections:
        kept: list[str] = []
        for section in sections:
            paragraphs = section.strip().split("\n\n")
            for index, paragraph in enumerate(paragraphs):
                following = paragraphs[index + 1] if index + 1 < len(paragraphs) else ""
                if paragraph.startswith("|") or following.startswith("|"):
                    kept.append(
                        f"(The tables that follow are in CHANGELOG.md, {entry.version}'s "
                        '"Upgrading" section.)'
                    )
                    break
                kept.append(paragraph)
        return "\n\n".join(kept)
    paragraphs = [block.strip() for block in entry.text.split("\n\n")]
    kept = []
    for block in paragraphs:
        if block.startswith("Updating"):
            # The paragraph ends where the entry's next bullet begins.
            lines = re.split(r"\n(?=- )", block, maxsplit=1)[0].splitlines()
            kept.append("\n".join(line.strip() for line in lines))
    return "\n\n".join(kept)


def render(source: Path, database: str, option: str, destination: Path) -> Path:
    from copier import run_copy

    data = {**ANSWERS, "database": database}
    if option != NONE:
        data[option] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_copy(str(source), destination, data=data, defaults=True, quiet=True, vcs_ref=None)
    return destination


def options_of(template: Path, database: str) -> list[str]:
    """The configurations a release renders for a database: none, and each option it asks
    (jobs only on PostgreSQL, which its validator demands)."""
    questions = (template / "copier.yml").read_text()
    asked = [o for o in OPTIONS if re.search(rf"^{o}:", questions, re.MULTILINE)]
    return [NONE, *(o for o in asked if o != "jobs" or database == "postgresql")]


def export(commit: str | None, destination: Path) -> Path:
    """The template at `commit` (None: the working tree, uncommitted changes included),
    as a plain directory Copier renders without a clone."""
    destination.mkdir(parents=True)
    if commit is None:
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            check=True,
            text=True,
        ).stdout
        for name in filter(None, listed.split("\0")):
            source = ROOT / name
            if source.is_file() and (
                name == "copier.yml" or name.split("/")[0] in {"template", "includes"}
            ):
                (destination / name).parent.mkdir(parents=True, exist_ok=True)
                (destination / name).write_bytes(source.read_bytes())
        return destination
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(destination)], input=archive, check=True)
    return destination


def _default(value: ast.expr | None, constants: dict[str, str]) -> str:
    """A field's default as the code writes it, with module constants resolved."""
    if value is None:
        return "(required)"
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "Field":
        for keyword in value.keywords:
            if keyword.arg == "default":
                return _default(keyword.value, constants)
            if keyword.arg == "default_factory":
                factory = keyword.value
                body = factory.body if isinstance(factory, ast.Lambda) else factory
                return {"list": "[]", "dict": "{}"}.get(ast.unparse(body)) or _default(
                    body, constants
                )
        return _default(value.args[0], constants) if value.args else "(required)"
    if isinstance(value, ast.Name) and value.id in constants:
        return constants[value.id]
    if isinstance(value, ast.Call) and len(value.args) == 1 and not value.keywords:
        # SecretStr("..."), make_url(LOCAL_URL): the value is what the argument says.
        argument = value.args[0]
        if isinstance(argument, ast.Constant) or (
            isinstance(argument, ast.Name) and argument.id in constants
        ):
            return _default(argument, constants)
    return ast.unparse(value)


# A setting's entry for an older name it still reads (`AliasChoices("NEW", "OLD")`): the
# marker, then the name it reads it for.
ALIAS = "\0"


def _env_names(name: str, value: ast.expr | None) -> list[str]:
    """The names a field reads, its own first: `alias`/`validation_alias`, or each of an
    `AliasChoices`, else the field's name."""
    if isinstance(value, ast.Call) and ast.unparse(value.func) == "Field":
        for keyword in value.keywords:
            if keyword.arg not in {"alias", "validation_alias"}:
                continue
            if isinstance(keyword.value, ast.Constant):
                return [str(keyword.value.value).upper()]
            if isinstance(keyword.value, ast.Call) and ast.unparse(keyword.value.func) == (
                "AliasChoices"
            ):
                return [
                    str(a.value).upper() for a in keyword.value.args if isinstance(a, ast.Constant)
                ]
    return [name.upper()]


def _backends(node: ast.expr) -> dict[str, set[str]]:
    """`_ONLY_ON`'s table: setting -> the backends that have it."""
    table: dict[str, set[str]] = {}
    if isinstance(node, ast.Dict):
        for key, value in zip(node.keys, node.values, strict=True):
            if isinstance(key, ast.Constant) and isinstance(value, ast.Tuple):
                names = {n.value for n in ast.walk(value.elts[0]) if isinstance(n, ast.Constant)}
                table[str(key.value)] = {str(name) for name in names}
    return table


def settings_of(project: Path, database: str) -> dict[str, str]:
    """Environment variable -> default, for the rendered service's `Settings`: those its
    backend reads (the kit's `_ONLY_ON` refuses the others at start-up)."""
    package = project / "src" / PACKAGE
    classes: dict[str, ast.ClassDef] = {}
    constants: dict[str, str] = {}  # module-level NAME = "text" of the settings modules
    after_the_service: set[str] = set()  # fields that default to SERVICE_NAME
    only_on: dict[str, set[str]] = {}  # fields only some backends read
    settings_module = None
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package).as_posix()
        if not ("settings" in relative or relative == "core/config.py"):
            continue
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                classes.setdefault(node.name, node)
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                if not isinstance(target, ast.Name):
                    continue
                if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    constants[target.id] = ast.unparse(node.value)
                elif target.id == "_NAMED_AFTER_THE_SERVICE":
                    after_the_service.update(ast.literal_eval(node.value))
            elif isinstance(node, ast.AnnAssign) and ast.unparse(node.target) == "_ONLY_ON":
                only_on.update(_backends(node.value) if node.value else {})
        if relative in {"settings.py", "core/config.py"}:
            settings_module = tree
    assert settings_module is not None, f"no settings module in {package}"
    (service,) = [
        n for n in settings_module.body if isinstance(n, ast.ClassDef) and n.name == "Settings"
    ]
    found: dict[str, str] = {}

    def collect(node: ast.ClassDef) -> None:
        for base in reversed(node.bases):  # the first base wins, as in Python's MRO
            if isinstance(base, ast.Name) and base.id in classes:
                collect(classes[base.id])
        for item in node.body:
            if not (isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)):
                continue
            name, annotation = item.target.id, ast.unparse(item.annotation)
            if name.startswith("_") or name == "model_config" or "ClassVar" in annotation:
                continue
            env, *older = _env_names(name, item.value)
            if annotation == "NotHere":  # a setting the backend refuses: not one it reads
                found.pop(env, None)
                continue
            found[env] = _default(item.value, constants)
            for alias in older:
                found[alias] = f"{ALIAS}{env}"

    collect(service)
    for name in after_the_service:
        found[name.upper()] = found["SERVICE_NAME"]
    for name, backends in only_on.items():
        if database not in backends:
            found.pop(name.upper(), None)
    return dict(sorted(found.items()))


def answers_needed(condition: str) -> str:
    """A file name's condition as the answers it needs: `jobs and example_domain` is
    "jobs=true and example_domain=true", `auth == "password"` is "auth=password"."""
    needed = []
    for part in condition.split(" and "):
        compared = re.fullmatch(r"(\w+) == [\"'](\w+)[\"']", part.strip())
        negated = re.fullmatch(r"not (\w+)", part.strip())
        if compared:
            needed.append(f"{compared[1]}={compared[2]}")
        elif negated:
            needed.append(f"{negated[1]}=false")
        else:
            needed.append(f"{part.strip()}=true")
    return " and ".join(needed)


def migrations_of(project: Path, template: Path) -> list[dict[str, str]]:
    """The migrations a render holds: file, revision, and the answer it needs."""
    needs: dict[str, str] = {}
    for path in (template / "template" / "migrations" / "versions").iterdir():
        condition = re.match(r"\{% if (.+?) %\}(.+?)\{% endif %\}", path.name)
        if condition:
            needs[condition[2].removesuffix(".jinja")] = answers_needed(condition[1])
    found = []
    for path in sorted((project / "migrations" / "versions").glob("*.py")):
        revision = re.search(
            r"^revision(?:: str)? = ['\"](\w+)['\"]", path.read_text(), re.MULTILINE
        )
        found.append(
            {
                "file": path.name,
                "revision": revision[1] if revision else "",
                "needs": needs.get(path.name, ""),
            }
        )
    return found


def _read(task: tuple[Path, str, str, Path]) -> tuple[dict[str, str], list[dict[str, str]]]:
    template, database, option, destination = task
    project = render(template, database, option, destination)
    return settings_of(project, database), migrations_of(project, template)


def snapshot_all(
    ends: list[tuple[str, str | None, tuple[str, ...]]], work: Path
) -> dict[str, dict[str, Any]]:
    """version -> database -> {"settings": {configuration: settings}, "migrations": [...]},
    for each (version, commit or None for the working tree, databases); two renders at a
    time."""
    tasks = []
    for version, commit, databases in ends:
        template = export(commit, work / version / "template")
        for database in databases:
            for option in options_of(template, database):
                destination = work / version / f"{database}-{option}"
                tasks.append((version, database, option, (template, database, option, destination)))
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_read, [task[3] for task in tasks]))
    snapshots: dict[str, dict[str, Any]] = {}
    for (version, database, option, _), (settings, migrations) in zip(tasks, results, strict=True):
        end = snapshots.setdefault(version, {}).setdefault(
            database, {"settings": {}, "migrations": []}
        )
        end["settings"][option] = settings
        known = {m["file"] for m in end["migrations"]}
        end["migrations"] = sorted(
            [*end["migrations"], *(m for m in migrations if m["file"] not in known)],
            key=lambda m: m["file"],
        )
    return snapshots


def _placeholders(text: str) -> str:
    return text.replace(PACKAGE, "<package>").replace(SLUG, "<project-slug>")


def _who(configurations: set[str], every: list[str]) -> str:
    """Which services a line is about, from the configurations where it holds."""
    if configurations == set(every):
        return ""
    if NONE in configurations:
        missing = [c for c in every if c not in configurations]
        return f" (services without: {', '.join(missing)})"
    return f" (services with: {', '.join(c for c in every if c in configurations)})"


def report(old: dict[str, Any], new: dict[str, Any], steps: list[tuple[str, str]]) -> str:
    """What can break a deployment between two snapshots of one database, as text. Each
    configuration (no option, one option) is compared with the same one of the old
    release (with no option where the old release did not ask it); a line that holds for
    some configurations only says which."""
    every = list(new["settings"])
    renamed: dict[tuple[str, str], set[str]] = {}
    added: dict[str, set[str]] = {}
    removed: dict[str, set[str]] = {}
    changed: dict[tuple[str, str, str], set[str]] = {}
    values: dict[str, str] = {}
    for configuration in every:
        after = dict(new["settings"][configuration])
        before = old["settings"].get(configuration, old["settings"][NONE])
        aliases = {n: v[1:] for n, v in after.items() if v.startswith(ALIAS)}
        for alias, name in aliases.items():
            del after[alias]
            if alias in before and not before[alias].startswith(ALIAS):
                renamed.setdefault((alias, name), set()).add(configuration)
        before = {n: v for n, v in before.items() if not v.startswith(ALIAS)}
        targets = {target for _, target in renamed}
        for name, value in after.items():
            values.setdefault(name, value)
            if name in before and before[name] != value:
                changed.setdefault((name, before[name], value), set()).add(configuration)
            elif name not in before and name not in targets:
                added.setdefault(name, set()).add(configuration)
        for name in before:
            if name not in after and name not in aliases:
                removed.setdefault(f"{name}\0{before[name]}", set()).add(configuration)
    known = {m["file"] for m in old["migrations"]}
    migrations = [m for m in new["migrations"] if m["file"] not in known]
    lines: list[str] = []

    def section(title: str, rows: list[str]) -> None:
        lines.extend([f"### {title}", "", *(rows or ["None."]), ""])

    def shown(text: str) -> str:
        return f"`{_placeholders(text)}`"

    section(
        "Settings added (their defaults apply unless you set them)",
        [f"- `{n}` = {shown(values[n])}{_who(c, every)}" for n, c in sorted(added.items())],
    )
    section(
        "Settings renamed (the old name is still read; move to the new one)",
        [f"- `{a}` -> `{b}`{_who(c, every)}" for (a, b), c in sorted(renamed.items())],
    )
    section(
        "Settings removed (a deployment that sets one sets nothing now: remove it, "
        "or set what the upgrade steps name instead)",
        [
            f"- `{key.split(chr(0))[0]}` (was {shown(key.split(chr(0))[1])}){_who(c, every)}"
            for key, c in sorted(removed.items())
        ],
    )
    for title, sensitive in (("pool, timeouts and limits", True), ("other settings", False)):
        section(
            f"Changed defaults: {title}",
            [
                f"- `{n}`: {shown(a)} -> {shown(b)}{_who(c, every)}"
                for (n, a, b), c in sorted(changed.items())
                if bool(SENSITIVE.search(n)) == sensitive
            ],
        )
    section(
        "Migrations the template added (run `alembic upgrade head` before the new code serves)",
        [
            f"- `{m['file']}` (revision `{m['revision']}`"
            + (f"; services answering {m['needs']})" if m["needs"] else ")")
            for m in migrations
        ],
    )
    for version, text in steps:
        section(f"Upgrade steps of {version} (CHANGELOG.md)", [text or "None."])
    return "\n".join(lines).rstrip() + "\n"


def build(*, keep: bool = True) -> tuple[dict[str, Any], str]:
    """The data and the version file; `keep`: rewrite SNAPSHOTS when it was stale."""
    entries = changelog_entries((ROOT / "CHANGELOG.md").read_text())
    newest = entries[0]
    recorded = {release.tag: release for release in RELEASES}
    releases = [
        {
            "version": entry.version,
            "date": entry.date,
            "commit": recorded[entry.version].commit if entry.version in recorded else None,
        }
        for entry in reversed(entries)
    ]
    steps = {entry.version: upgrade_steps(entry) for entry in entries}
    order = [release["version"] for release in releases]
    # A recorded release's snapshot depends only on its commit and this script: kept in
    # SNAPSHOTS, and rendered again when either changed.
    generator = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
    kept = json.loads(SNAPSHOTS.read_text()) if SNAPSHOTS.exists() else {}
    usable = kept.get("generator") == generator and all(
        kept.get("commits", {}).get(r.tag) == r.commit for r in RELEASES
    )
    ends = [] if usable else [(r.tag, r.commit, r.databases) for r in RELEASES]
    with tempfile.TemporaryDirectory() as work:
        snapshots = snapshot_all([*ends, (newest.version, None, DATABASES)], Path(work))
    if usable:
        snapshots.update(kept["snapshots"])
    elif keep:
        SNAPSHOTS.write_text(
            json.dumps(
                {
                    "generator": generator,
                    "commits": {r.tag: r.commit for r in RELEASES},
                    "snapshots": {r.tag: snapshots[r.tag] for r in RELEASES},
                },
                indent=1,
                sort_keys=True,
            )
            + "\n"
        )
    reports: dict[str, dict[str, str]] = {database: {} for database in DATABASES}
    for database in DATABASES:
        for release in RELEASES:
            if database not in snapshots[release.tag]:
                continue
            crossed = order[order.index(release.tag) + 1 :]
            reports[database][release.tag] = report(
                snapshots[release.tag][database],
                snapshots[newest.version][database],
                [(version, steps[version]) for version in crossed],
            )
    # Services rendered before the answers file recorded `template_release` came from
    # the newest release whose answers file did not, or an older one.
    unrecorded = [
        r.tag for r in RELEASES if "template_release" not in _show(r.commit, ANSWERS_FILE)
    ]
    data = {
        "release": newest.version,
        "releases": releases,
        "reports": reports,
        "unrecorded": unrecorded[-1] if unrecorded else None,
    }
    version = (
        "# Written by scripts/release_data.py from CHANGELOG.md; do not edit.\n"
        "# The release this template is: recorded in each service's answers file.\n"
        "template_version:\n"
        "  type: str\n"
        "  when: false\n"
        f"  default: {newest.version}\n"
    )
    return data, version


def _show(commit: str, path: str) -> str:
    shown = subprocess.run(
        ["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return shown.stdout


CONDITION = re.compile(r"\{% if (?P<condition>[^%{}]+?) %\}(?P<text>[^{}]*)\{% endif %\}")


def manifest() -> str:
    """`.copier/files.txt`: each file the working tree's template renders, one a line, its
    path as Copier names it (a part whose condition fails renders empty, and the line is
    skipped by the report). Conditions are written as expressions: the file is data."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "template"],
        cwd=ROOT,
        capture_output=True,
        check=True,
        text=True,
    ).stdout
    lines = []
    for name in sorted(filter(None, listed.split("\0"))):
        if not (ROOT / name).is_file():
            continue
        path = name.removeprefix("template/").removesuffix(".jinja")
        lines.append(CONDITION.sub(r'{{ "\g<text>" if \g<condition> else "" }}', path))
    return (
        "{# Written by scripts/release_data.py: the files this release renders. #}\n"
        + "\n".join(lines)
        + "\n"
    )


def serialized(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the files are stale")
    arguments = parser.parse_args()
    data, version = build(keep=not arguments.check)
    expected = {DATA: serialized(data), VERSION_FILE: version, FILES: manifest()}
    if arguments.check:
        stale = [
            str(p.relative_to(ROOT))
            for p, t in expected.items()
            if not p.exists() or p.read_text() != t
        ]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python scripts/release_data.py")
            return 1
        return 0
    for path, text in expected.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
