"""`copier update` brings a new release into a service its users have already changed.

From every release so far and every backend it offered: a service rendered then, with a
resource its team added the way that release's README and example domain showed, takes
the working tree's release without a conflict, keeps every edit, and passes its own
tests (the team's included) with the team's old names still working, each warning
which name replaces it. Its database, migrated under the old release, reaches the new
release's schema through the new release's migrations and the step the CHANGELOG
documents (`alembic merge heads`), with nothing left for `alembic check` to report.
"""

import filecmp
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from string import Template

import pytest
import yaml
from copier import run_copy, run_update

from .conftest import Rendered
from .harness import releases
from .harness.databases import admin_url, check_server, mariadb, scratch_database
from .harness.run import Outcome, parse_pytest_summary, run

ANSWERS = {"project_name": "Ledger", "author_email": "ops@example.org"}
COPIER = str(Path(sys.executable).parent / "copier")
CASES = [
    pytest.param(release.tag, database, id=f"{release.tag}-{database}")
    for release in releases.RELEASES
    for database in release.databases
]

# How each release's README and example domain spelled what a new resource needs.
SPELLING: dict[str, dict[str, str]] = {
    "v0.1.0": {
        "uuid_import": "import uuid\n",
        "key_import": "",
        "key": "uuid.UUID",
        "key_mixin": "UUIDPrimaryKeyMixin",
        "mixin_imports": (
            "from ..db.mixins import TimestampMixin\nfrom ..db.mixins import UUIDPrimaryKeyMixin\n"
        ),
        "def": "def",  # v0.1.0's project_service was a plain function
    },
    "v0.2.0": {
        "uuid_import": "",
        "key_import": "from ..db.keys import Key\n",
        "key": "Key",
        "key_mixin": "PrimaryKeyMixin",
        "mixin_imports": (
            "from ..db.keys import PrimaryKeyMixin\nfrom ..db.mixins import TimestampMixin\n"
        ),
        "def": "async def",
    },
}
# The names of each release the resource uses that the working tree renames: (old, new).
RENAMED: dict[str, list[tuple[str, str]]] = {
    "v0.1.0": [
        ("UUIDPrimaryKeyMixin", "PrimaryKeyMixin"),
        ("DBSession", "ReadSessionDep"),
        ("CrudService", "db.resource.Service"),
    ],
    "v0.2.0": [("DBSession", "ReadSessionDep"), ("CrudService", "db.resource.Service")],
}

# The team's resource, file by file, as the projects package of those releases is written.
NOTES = {
    "__init__.py": '"""Notes: what the ledger team writes down, added after the first render."""\n',
    "models.py": """\
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db.base import Base
${mixin_imports}from ..db.mixins import VersionedMixin


class Note(${key_mixin}, TimestampMixin, VersionedMixin, Base):
    __tablename__ = "note"

    body: Mapped[str] = mapped_column(Text)
""",
    "schemas.py": """\
${uuid_import}from datetime import datetime

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field
${key_group}

class NoteCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    body: str = Field(min_length=1, max_length=10_000)


class NoteUpdate(BaseModel):
    \"\"\"Only the fields sent are changed; `version` is the one the client last read.\"\"\"

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    version: int = Field(ge=1)
    body: str | None = Field(default=None, min_length=1, max_length=10_000)


class NoteRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: ${key}
    body: str
    version: int
    created_at: datetime
    updated_at: datetime
""",
    "repository.py": """\
from ..db.repository import BaseRepository
from .models import Note


class NoteRepository(BaseRepository[Note]):
    model = Note
""",
    "service.py": """\
from sqlalchemy.ext.asyncio import AsyncSession

from ..core.config import Settings
from ..db.service import CrudService
from .models import Note
from .repository import NoteRepository
from .schemas import NoteCreate


class NoteService(CrudService[Note]):
    repository: NoteRepository
    resource = "note"

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        super().__init__(session, settings)
        self.repository = NoteRepository(session)

    async def create(self, data: NoteCreate) -> Note:
        return await self.transaction(lambda: self.repository.create(**data.model_dump()))
""",
    "dependencies.py": """\
from typing import Annotated

from fastapi import Depends

from ..api.dependencies import AppSettings
from ..db.session import DBSession
from .service import NoteService


${def} note_service(session: DBSession, settings: AppSettings) -> NoteService:
    return NoteService(session, settings)


Notes = Annotated[NoteService, Depends(note_service)]
""",
    "router.py": """\
${uuid_group}from fastapi import APIRouter
from fastapi import Request
from fastapi import Response
from fastapi import status

from ..api.problems import error_responses
${key_import}from .dependencies import Notes
from .schemas import NoteCreate
from .schemas import NoteRead
from .schemas import NoteUpdate

router = APIRouter(prefix="/notes", tags=["notes"], responses=error_responses(422, 503))


@router.post(
    "",
    response_model=NoteRead,
    status_code=status.HTTP_201_CREATED,
    responses=error_responses(409),
)
async def create_note(
    data: NoteCreate, notes: Notes, request: Request, response: Response
) -> object:
    note = await notes.create(data)
    response.headers["Location"] = request.app.url_path_for("get_note", note_id=note.id)
    return note


@router.get("/{note_id}", response_model=NoteRead, responses=error_responses(404))
async def get_note(note_id: ${key}, notes: Notes) -> object:
    return await notes.get(note_id)


@router.patch("/{note_id}", response_model=NoteRead, responses=error_responses(404, 409))
async def update_note(note_id: ${key}, data: NoteUpdate, notes: Notes) -> object:
    values = data.model_dump(exclude_unset=True, exclude={"version"})
    return await notes.update(note_id, data.version, values)


@router.delete("/{note_id}", status_code=status.HTTP_204_NO_CONTENT, responses=error_responses(404))
async def delete_note(note_id: ${key}, notes: Notes) -> None:
    await notes.delete(note_id)
""",
}

NOTES_TEST = """\
import uuid
from typing import Any

from httpx import AsyncClient

NOTES = "/api/v1/notes"


async def create(client: AsyncClient, body: str) -> dict[str, Any]:
    response = await client.post(NOTES, json={"body": body})
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    assert response.headers["location"] == f"{NOTES}/{result['id']}"
    return result


async def test_a_note_is_stored_and_read_back(client: AsyncClient) -> None:
    created = await create(client, "Close the books on Friday")
    assert created["body"] == "Close the books on Friday" and created["version"] == 1
    response = await client.get(f"{NOTES}/{created['id']}")
    assert response.status_code == 200 and response.json() == created


async def test_a_note_is_changed_then_deleted(client: AsyncClient) -> None:
    url = f"{NOTES}/{(await create(client, 'draft'))['id']}"
    changed = await client.patch(url, json={"version": 1, "body": "final"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["body"] == "final" and changed.json()["version"] == 2
    assert (await client.patch(url, json={"version": 1, "body": "late"})).status_code == 409
    assert (await client.delete(url)).status_code == 204
    assert (await client.get(url)).status_code == 404


async def test_an_unknown_note_is_a_404(client: AsyncClient) -> None:
    assert (await client.get(f"{NOTES}/{uuid.uuid4()}")).status_code == 404
"""

# Kept: (file, text it must still hold after the update).
Kept = list[tuple[Path, str]]


@pytest.fixture(scope="module")
def template_releases(tmp_path_factory: pytest.TempPathFactory) -> releases.Releases:
    return releases.build(tmp_path_factory.mktemp("releases"))


@pytest.fixture(scope="module")
def first_render(
    template_releases: releases.Releases, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str, str, Path], Path]:
    """`first_render(tag, database, into)`: a copy of the service that release rendered,
    committed as its team's first commit; each (release, backend) renders once."""
    cache: dict[tuple[str, str], Path] = {}

    def copy(tag: str, database: str, into: Path) -> Path:
        if (tag, database) not in cache:
            data = releases.BY_TAG[tag].answers(database)
            path = render(template_releases, tag, tmp_path_factory.mktemp("first") / "svc", data)
            commit_all(path, "first render")
            cache[tag, database] = path
        return Path(shutil.copytree(cache[tag, database], into, symlinks=True))

    return copy


def render(src: releases.Releases, ref: str, destination: Path, data: dict[str, str]) -> Path:
    answers = {**ANSWERS, **data}
    run_copy(str(src.repo), destination, data=answers, defaults=True, vcs_ref=ref, quiet=True)
    return destination


def commit_all(project: Path, message: str) -> None:
    if not (project / ".git").exists():
        releases.git(project, "init", "-q", "-b", "main")
    releases.git(project, "add", "-A")
    releases.git(project, "commit", "-q", "--allow-empty", "-m", message)


def update(project: Path, ref: str) -> None:
    run_update(
        project,
        defaults=True,
        overwrite=True,
        vcs_ref=ref,
        conflict="inline",
        quiet=True,
        skip_answered=True,
    )


def answers_of(project: Path) -> dict[str, object]:
    return dict(yaml.safe_load((project / ".copier-answers.yml").read_text()))


def spelled(text: str, tag: str) -> str:
    """`text` written in the names of release `tag`."""
    words = SPELLING[tag]
    return Template(text).substitute(
        words,
        uuid_group=words["uuid_import"] and words["uuid_import"] + "\n",
        key_group=words["key_import"] and "\n" + words["key_import"],
    )


def add_a_resource(project: Path, tag: str, database: str, bin_dir: Path) -> Kept:
    """A `notes` resource, added as the release's README and example domain show: model,
    registry, autogenerated migration, repository, service, dependency, router, its
    registration in main.py, and a test. Returns the lines the registries must keep."""
    package = str(answers_of(project)["package_name"])
    src = project / "src" / package
    (src / "notes").mkdir()
    for name, text in NOTES.items():
        (src / "notes" / name).write_text(spelled(text, tag))
    models = src / "models.py"
    text = models.read_text().replace(
        "from .db.base import Base\n", "from .db.base import Base\nfrom .notes.models import Note\n"
    )
    models.write_text(text.replace('__all__ = ["Base", ', '__all__ = ["Base", "Note", '))
    autogenerate(project, package, database, bin_dir)
    main = src / "main.py"
    text = main.read_text().replace(
        "from .projects.router import router as projects_router\n",
        "from .notes.router import router as notes_router\n"
        "from .projects.router import router as projects_router\n",
    )
    main.write_text(
        text.replace(
            "    api.include_router(tasks_router)\n",
            "    api.include_router(tasks_router)\n    api.include_router(notes_router)\n",
        )
    )
    (project / "tests" / "api" / "test_notes.py").write_text(NOTES_TEST)
    return [
        (models, "from .notes.models import Note\n"),
        (models, '__all__ = ["Base", "Note", '),
        (main, "from .notes.router import router as notes_router\n"),
        (main, "    api.include_router(notes_router)\n"),
    ]


def autogenerate(project: Path, package: str, database: str, bin_dir: Path) -> None:
    """`alembic revision --autogenerate` against a database at the release's head."""
    with scratch_database(database, "autogen") as url:
        for command in (("upgrade", "head"), ("revision", "--autogenerate", "-m", "add notes")):
            outcome = run(bin_dir, project, "alembic", *command, env={"DATABASE_URL": url})
            assert outcome.ok, outcome.output[-3000:]
    (migration,) = (project / "migrations" / "versions").glob("*_add_notes.py")
    text = migration.read_text()
    custom_type = f"{package}.db.types."
    if custom_type in text and f"import {package}.db.types" not in text:
        # v0.2.0's autogenerate names the timestamp type of MariaDB and SQLite without
        # importing it, and `alembic upgrade` fails with NameError; its users add the
        # import by hand (issue 11), as done here.
        text = text.replace(
            "from alembic import op\n", f"from alembic import op\n\nimport {custom_type[:-1]}\n"
        )
        migration.write_text(text)


def edit_like_a_user(project: Path) -> Kept:
    """The edits teams make to files the template owns; returns the text they must keep.

    The example domain's own files (projects/, tasks/) are an example to replace, and this
    release rewrites them: edits to them are not carried across (the CHANGELOG says so).
    """
    src = project / "src" / str(answers_of(project)["package_name"])
    config = src / "core" / "config.py"
    text = config.read_text()
    assert "max_page_size: int = Field(default=100, ge=1, le=1000)" in text
    config.write_text(
        text.replace("Field(default=100, ge=1, le=1000)", "Field(default=250, ge=1, le=1000)")
    )
    (project / ".env").write_text("DB_POOL_SIZE=7\n")
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Our runbook\n\nPage the ledger team.\n")
    return [
        (config, "max_page_size: int = Field(default=250, ge=1, le=1000)"),
        (project / ".env", "DB_POOL_SIZE=7"),
        (readme, "## Our runbook"),
    ]


def service_tests(
    bin_dir: Path, project: Path, database: str, tmp_path: Path, *paths: str
) -> Outcome:
    """The service's own tests, on its real database, as its developers run them."""
    return run(
        bin_dir,
        project,
        "pytest",
        "-p",
        "no:cacheprovider",
        "-v",
        *paths,
        env={"DATABASE_URL": admin_url(database, tmp_path)},
    )


def assert_clean_merge(project: Path) -> None:
    status = releases.git(project, "status", "--porcelain")
    assert not [line for line in status.splitlines() if line[:2] in {"UU", "AA", "DU", "UD"}]
    assert not list(project.rglob("*.rej"))
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            text = path.read_text(errors="replace")
            assert "<<<<<<< " not in text and ">>>>>>> " not in text, path


def alembic(bin_dir: Path, project: Path, url: str, *args: str) -> str:
    outcome = run(bin_dir, project, "alembic", *args, env={"DATABASE_URL": url})
    assert outcome.ok, outcome.output[-3000:]
    return outcome.output


def latin1_by_default(database: str, url: str) -> None:
    """Make a scratch MariaDB database's default character set latin1, as on a server
    configured so (the old releases' tables declared none, and took it)."""
    if database == "mysql":
        name = url.rsplit("/", 1)[1]
        mariadb(f"ALTER DATABASE `{name}` CHARACTER SET latin1 COLLATE latin1_swedish_ci")


def table_charsets(database: str, url: str) -> dict[str, str]:
    """MariaDB: each base table's character set (from its collation), but Alembic's own."""
    name = url.rsplit("/", 1)[1]
    rows = mariadb(
        "SELECT t.table_name, c.character_set_name FROM information_schema.tables t "
        "JOIN information_schema.collation_character_set_applicability c "
        "ON c.collation_name = t.table_collation "
        f"WHERE t.table_schema = '{name}' AND t.table_type = 'BASE TABLE' "
        "AND t.table_name <> 'alembic_version'"
    )
    return {str(table): str(charset) for table, charset in rows}


def recorded_commit(project: Path) -> str:
    return str(answers_of(project)["_commit"])


def test_check_update_reports_the_new_release(
    template_releases: releases.Releases,
    first_render: Callable[[str, str, Path], Path],
    tmp_path: Path,
) -> None:
    project = first_render(releases.RELEASES[0].tag, "postgresql", tmp_path / "svc")

    def check() -> dict[str, object]:
        out = subprocess.run(
            [COPIER, "check-update", "--output-format", "json", str(project)],
            capture_output=True,
            text=True,
            check=False,
        )
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))

    before = check()
    assert before["update_available"] is True
    assert str(before["latest_version"]).lstrip("v") == template_releases.new.lstrip("v")
    update(project, template_releases.new)
    commit_all(project, "update")
    assert check()["update_available"] is False


@pytest.mark.parametrize(("tag", "database"), CASES)
def test_updating_an_untouched_service_equals_a_fresh_render(
    template_releases: releases.Releases,
    first_render: Callable[[str, str, Path], Path],
    tmp_path: Path,
    tag: str,
    database: str,
) -> None:
    updated = first_render(tag, database, tmp_path / "updated")
    update(updated, template_releases.new)
    fresh = render(
        template_releases, template_releases.new, tmp_path / "fresh", {"database": database}
    )
    assert recorded_commit(updated) == template_releases.new
    differences: list[str] = []

    def compare(left: Path, right: Path, comparison: filecmp.dircmp[str]) -> None:
        differences.extend(f"only in update: {n}" for n in comparison.left_only if n != ".git")
        differences.extend(f"only in fresh: {n}" for n in comparison.right_only)
        differences.extend(f"differs: {n}" for n in comparison.diff_files)
        for name, sub in comparison.subdirs.items():
            if name != ".git":
                compare(left / name, right / name, sub)

    compare(updated, fresh, filecmp.dircmp(updated, fresh, ignore=[".git"]))
    assert differences == []


@pytest.mark.full
@pytest.mark.parametrize(("tag", "database"), CASES)
def test_update_keeps_every_user_edit_and_the_tests_pass(
    template_releases: releases.Releases,
    first_render: Callable[[str, str, Path], Path],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
    tag: str,
    database: str,
) -> None:
    check_server(database)  # fails with how-to-start instructions when the server is down
    project = first_render(tag, database, tmp_path / "svc")
    old_bin = venv_for(Rendered(tag, project, answers_of(project)))
    kept = add_a_resource(project, tag, database, old_bin) + edit_like_a_user(project)
    # The team's work passes its tests on the release it was written for.
    before = service_tests(
        old_bin,
        project,
        database,
        tmp_path,
        "tests/api/test_notes.py",
        "tests/test_models.py",
        "tests/test_migrations.py",
    )
    assert before.ok, before.output[-5000:]
    commit_all(project, "our changes")
    added = releases.git(project, "diff", "--name-only", "--diff-filter=A", "HEAD~", "HEAD")
    theirs = {project / name: (project / name).read_text() for name in added.split()}
    assert len(theirs) == len(NOTES) + 2  # the package, its migration and its test
    with scratch_database(database, f"deployed-{tag}") as deployed:
        # The team's database, migrated by the old release (the team's revision included).
        latin1_by_default(database, deployed)
        alembic(old_bin, project, deployed, "upgrade", "head")

        update(project, template_releases.new)

        assert_clean_merge(project)
        for path, text in theirs.items():
            assert path.read_text() == text, f"the update changed {path}"
        for path, text in kept:
            assert text in path.read_text(), f"{path} lost {text!r}"
        assert recorded_commit(project) == template_releases.new
        new_bin = venv_for(Rendered("updated", project, answers_of(project)))
        # The template's new revisions and the team's own both follow the initial one:
        # two heads, which the CHANGELOG's step for this update merges.
        assert len(alembic(new_bin, project, deployed, "heads").strip().splitlines()) == 2
        alembic(new_bin, project, deployed, "merge", "heads", "-m", "merge template revisions")
        alembic(new_bin, project, deployed, "upgrade", "head")
        assert "(head)" in alembic(new_bin, project, deployed, "current")
        assert "No new upgrade operations detected" in alembic(
            new_bin, project, deployed, "check"
        )
        if database == "mysql":
            charsets = table_charsets(database, deployed)
            assert "note" in charsets and set(charsets.values()) == {"utf8mb4"}, charsets
    after = service_tests(new_bin, project, database, tmp_path)
    counts = parse_pytest_summary(after.output)
    assert after.ok, after.output[-5000:]
    assert counts.passed > 0 and counts.failed == counts.errors == 0
    for name in re.findall(r"^async def (test_\w+)", NOTES_TEST, re.MULTILINE):
        assert f"tests/api/test_notes.py::{name} PASSED" in after.output, name
    # Every name of the release the team's code uses that is renamed still works, and
    # says what replaces it (pytest's warnings summary).
    warnings = [line for line in after.output.splitlines() if "DeprecationWarning: " in line]
    for old, new in RENAMED[tag]:
        assert any(old in line and new in line for line in warnings), (
            f"no DeprecationWarning for {old} that names {new}; the warnings:\n"
            + "\n".join(warnings)
        )
