"""Full tier: a resource added the way the rendered README's "Add a resource" says.

On each backend (and on a skeleton render), a copy of the render gets the guide's files,
written from the README's own code blocks, its model registered in `models.py` and its
router in `main.py` as the guide shows. `alembic revision --autogenerate` writes the
migration, which is used as written: upgrade, `alembic check`, downgrade, upgrade. Then
the service's whole suite (the guide's test included), ruff, ruff format and mypy
--strict pass. The guide and this test cannot drift apart: the test reads the guide.
"""

import ast
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import admin_url, scratch_database
from .harness.run import run, service_suite

pytestmark = pytest.mark.full

# One render of each backend with the example domain, and one without.
RENDERS = [
    "default",
    "mysql-int-soft-delete",
    "sqlite-int-hard-delete",
    "mysql-uuid-hard-delete-skeleton",
]
CODE = re.compile(r"```(python|bash)\n(.*?)```", flags=re.DOTALL)


def guide(project: Path) -> list[tuple[str, str]]:
    """The code blocks of the README's "Add a resource" section, in order."""
    readme = (project / "README.md").read_text()
    section = readme.split("## Add a resource", 1)[1].split("\n## ", 1)[0]
    return [(kind, body) for kind, body in CODE.findall(section)]


def follow(project: Path, package: str) -> list[str]:
    """Write the guide's files and registrations; return its shell commands."""
    blocks = guide(project)
    files = [body for kind, body in blocks if kind == "python" and body.startswith("# ")]
    assert len(files) >= 6, "the guide names each file it adds in a first-line comment"
    for body in files:
        first, rest = body.split("\n", 1)
        path = project / first.removeprefix("# ")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rest)
    registrations = [body for kind, body in blocks if kind == "python" and body.startswith("from")]
    model, router = registrations
    (model_import,) = model.strip().splitlines()
    register_model(project / "src" / package / "models.py", model_import)
    register_router(project / "src" / package / "main.py", router)
    return [line for kind, body in blocks if kind == "bash" for line in body.splitlines()]


def register_model(registry: Path, line: str) -> None:
    """Import the model in the registry and export it, both in the order ruff keeps."""
    name = line.rsplit(" ", 1)[1]
    text = _insert_import(registry.read_text(), line)
    exported = re.search(r"^__all__ = (\[.*?\])$", text, flags=re.MULTILINE | re.DOTALL)
    assert exported, f"no __all__ in {registry}:\n{text}"
    names: list[str] = [*ast.literal_eval(exported.group(1)), name]
    # ruff's RUF022 order: CONSTANTS, then Classes, then the rest, each alphabetical.
    names.sort(key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    listed = ", ".join(f'"{n}"' for n in names)
    registry.write_text(text.replace(exported.group(0), f"__all__ = [{listed}]"))


def register_router(main: Path, block: str) -> None:
    """The guide's import with the others, its include line after the app's last one."""
    line, include = block.rstrip().splitlines()
    lines = _insert_import(main.read_text(), line).splitlines()
    anchor = max(i for i, text in enumerate(lines) if text.strip().startswith("api = "))
    anchor = max([anchor, *(i for i, t in enumerate(lines) if "api.include_router(" in t)])
    lines.insert(anchor + 1, include)
    main.write_text("\n".join(lines) + "\n")


def _insert_import(text: str, line: str) -> str:
    lines = text.splitlines()
    imports = [i for i, t in enumerate(lines) if t.startswith("from .")]
    assert imports, "no package imports:\n" + text
    first, last = imports[0], imports[-1]
    block = [t for t in lines[first : last + 1] if not t.startswith("{")]
    lines[first : last + 1] = sorted([*block, line], key=lambda t: t.split(" import ")[0])
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("name", RENDERS)
def test_a_resource_added_as_the_readme_says_works(
    name: str,
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    rendered = render(name)
    bin_dir = venv_for(rendered)
    project = tmp_path / rendered.path.name
    shutil.copytree(rendered.path, project)  # the render is shared by the session's tests
    commands = follow(project, rendered.package)
    assert any("alembic revision --autogenerate" in c for c in commands), commands
    database = rendered.answers["database"]

    with scratch_database(database, f"resource-{name}") as url:

        def alembic(*args: str) -> str:
            outcome = run(bin_dir, project, "alembic", *args, env={"DATABASE_URL": url})
            assert outcome.ok, outcome.output
            return outcome.output

        alembic("upgrade", "head")
        alembic("revision", "--autogenerate", "-m", "add notes")
        (revision,) = (project / "migrations" / "versions").glob("*_add_notes.py")
        migration = revision.read_text()
        assert re.search(r'op.create_table\(\s*"note"', migration), migration
        assert rendered.package not in migration, "a migration must not import the service"
        if database == "mysql":  # a new table holds any text, whatever the database's default
            assert re.search(r"mysql_charset=[\"']utf8mb4[\"']", migration), migration
        alembic("upgrade", "head")
        assert "No new upgrade operations detected" in alembic("check")
        alembic("downgrade", "-1")
        assert "(head)" not in alembic("current")
        alembic("upgrade", "head")  # creates the table again: the downgrade dropped it
        assert "No new upgrade operations detected" in alembic("check")

    suite, counts = service_suite(bin_dir, project, admin_url(database, tmp_path))
    assert suite.ok, suite.output[-5000:]
    assert "PASSED tests/api/test_notes.py::test_a_note_and_its_answer" in suite.output
    assert counts.failed == counts.errors == counts.skipped == 0
    for tool in (
        ["ruff", "check", "--no-cache", "."],
        ["ruff", "format", "--no-cache", "--check", "."],
        ["mypy", "--strict", "--cache-dir", "/dev/null"],
    ):
        outcome = run(bin_dir, project, *tool)
        assert outcome.ok, f"{' '.join(tool)}:\n{outcome.output}\n{revision.name}:\n{migration}"
