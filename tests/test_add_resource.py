"""Full tier: a resource added the way the rendered README's "Add a resource" says.

On each backend (and on a skeleton render), a copy of the render gets the guide's files,
written from the README's own code blocks, its model registered in `models.py` and its
router in `main.py` as the guide shows. `alembic revision --autogenerate` writes the
migration, which is used as written: upgrade, `alembic check`, downgrade, upgrade. Then
the service's whole suite (the guide's test included), ruff, ruff format and mypy
--strict pass. The guide and this test cannot drift apart: the test reads the guide.
"""

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import admin_url, scratch_database, two_roles
from .harness.guide import follow
from .harness.run import run, service_suite

pytestmark = pytest.mark.full

# One render of each backend with the example domain, and one without.
RENDERS = [
    "default",
    "mysql-int-soft-delete",
    "sqlite-int-hard-delete",
    "mysql-uuid-hard-delete-skeleton",
]


# The guide's resource tested as the service tests its routes (the guide leaves the test
# to the team): a note, its answer, and an answer to a note that does not exist.
NOTES_TEST = """from httpx import AsyncClient

MISSING = {missing}


async def test_a_note_and_its_answer(client: AsyncClient) -> None:
    note = await client.post("/api/v1/notes", json={{"body": "first"}})
    assert note.status_code == 201
    answer = await client.post("/api/v1/notes", json={{"body": "re", "parent_id": note.json()["id"]}})
    assert answer.status_code == 201
    got = await client.get(f"/api/v1/notes/{{answer.json()['id']}}")
    assert got.json()["parent_id"] == note.json()["id"]
    orphan = await client.post("/api/v1/notes", json={{"body": "?", "parent_id": MISSING}})
    assert orphan.status_code == 409
"""
MISSING = {"uuid": '"00000000-0000-7000-8000-000000000000"', "int": "4611686018427387904"}


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
    missing = MISSING[rendered.answers["primary_key"]]
    (project / "tests" / "api" / "test_notes.py").write_text(NOTES_TEST.format(missing=missing))
    assert any("alembic revision --autogenerate" in c for c in commands), commands
    database = rendered.answers["database"]

    with (
        scratch_database(database, f"resource-{name}") as url,
        two_roles(bin_dir, project, rendered.package, database, url) as roles,
    ):
        # As production runs it: migrated by the owner, the service's role beside it.
        def alembic(*args: str) -> str:
            outcome = run(bin_dir, project, "alembic", *args, env=roles.env())
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
