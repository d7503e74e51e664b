"""Full tier: the code the documentation shows runs, as shown, on each backend.

The query cookbook (docs/patterns/cookbook.md) and the data migration of
docs/patterns/migrations.md are read from the pages themselves: their Python blocks
become a module, their revision blocks become files in a copy of a rendered service's
`migrations/versions/`. Alembic runs the revisions on a new database of the variant's
backend, then a script seeds rows and checks what each function returns.
"""

import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import scratch_database
from .harness.paths import TEMPLATE_ROOT
from .harness.run import run

pytestmark = pytest.mark.full

# One variant per backend, between them both kinds of key and both kinds of delete.
VARIANTS = ["default", "mysql-int-hard-delete-cache", "sqlite-uuid-soft-delete-traces"]
PAGES = TEMPLATE_ROOT / "docs" / "patterns"
# The example domain's head, which the documented revisions follow.
EXAMPLE_HEAD = "c945fb7d7904"
REVISION_FILE = re.compile(r"^# (migrations/versions/\S+\.py)\n")


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.DOTALL)


def revisions(page: Path) -> dict[str, str]:
    """The page's revision blocks: {path in the service: source}."""
    return revisions_in(page.read_text())


def module(page: Path, package: str) -> str:
    """The page's other Python blocks, in order, as one module of `package`."""
    blocks = [b for b in python_blocks(page) if not REVISION_FILE.match(b)]
    return "\n\n".join(blocks).replace("my_service", package)


@pytest.fixture(params=VARIANTS)
def service(
    request: pytest.FixtureRequest, render: Callable[[str], Rendered], tmp_path: Path
) -> tuple[Rendered, Path]:
    """A copy of the variant's render, to add revisions to without touching the original."""
    rendered = render(request.param)
    copy = tmp_path / "service"
    shutil.copytree(rendered.path, copy, ignore=shutil.ignore_patterns(".venv", "*.db"))
    return rendered, copy


# Rows both scripts start from, made with the service's own models and engine.
PRELUDE = """
import asyncio
import sys
from datetime import UTC, datetime

from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker

from {package}.settings import Settings
from {package}.kit.db.engine import build_engine
from {package}.projects.models import Project
from {package}.tasks.models import Task

engine = build_engine(Settings(), pool_size=1)
sessions = async_sessionmaker(engine, expire_on_commit=False)
statements: list[str] = []


@event.listens_for(engine.sync_engine, "before_cursor_execute")
def _count(conn, cursor, statement, parameters, context, executemany):
    # Queries only: not a backend's BEGIN or the settings of a new connection.
    if statement.lstrip().upper().startswith("SELECT"):
        statements.append(statement)
"""

COOKBOOK_CHECKS = """
import cookbook

PAST, FUTURE = datetime(2025, 1, 1, tzinfo=UTC), datetime(2030, 1, 1, tzinfo=UTC)
BOARD = {
    "Alpha": [("t1", 5, PAST, "todo"), ("t2", 1, FUTURE, "todo"), ("t3", 2, PAST, "done")],
    "Beta": [("t4", 3, PAST, "doing"), ("t5", 4, None, "todo"), ("t6", 0, None, "todo")],
    "Gamma_1": [],
    "Gammax1": [],
    "100% done": [],
}


async def seed() -> None:
    async with sessions() as session, session.begin():
        for name, tasks in BOARD.items():
            project = Project(name=name, slug=name.lower().replace(" ", "-").replace("%", ""))
            session.add(project)
            await session.flush()
            for title, priority, due_at, status in tasks:
                session.add(
                    Task(
                        project_id=project.id,
                        title=title,
                        priority=priority,
                        due_at=due_at,
                        status=status,
                    )
                )


def counted() -> int:
    count = len(statements)
    statements.clear()
    return count


async def check() -> None:
    await seed()
    async with sessions() as session:
        counted()
        projects = await cookbook.projects_with_their_tasks(session, ["Alpha", "Beta"])
        assert counted() == 2
        assert [(p.name, sorted(t.title for t in p.tasks)) for p in projects] == [
            ("Alpha", ["t1", "t2", "t3"]),
            ("Beta", ["t4", "t5", "t6"]),
        ]
    async with sessions() as session:
        counted()
        tasks = await cookbook.tasks_with_their_project(session, "todo")
        assert counted() == 1
        assert [(t.title, t.project.name) for t in tasks] == [
            ("t1", "Alpha"), ("t2", "Alpha"), ("t5", "Beta"), ("t6", "Beta")
        ]
    async with sessions() as session:
        # Alpha is already in the session with all its tasks.
        await cookbook.projects_with_their_tasks(session, ["Alpha"])
        counted()
        overdue = await cookbook.projects_with_overdue_tasks(session, datetime.now(UTC))
        assert counted() == 1
        assert [(p.name, [t.title for t in p.tasks]) for p in overdue] == [
            ("Alpha", ["t1"]),
            ("Beta", ["t4"]),
        ]
    async with sessions() as session:
        assert await cookbook.open_task_counts(session, 1) == [("Beta", 3), ("Alpha", 2)]
        assert await cookbook.open_task_counts(session, 3) == [("Beta", 3)]
        ids = {p.name: p.id for p in await session.scalars(select(Project))}
        top = await cookbook.most_urgent_per_project(session, 1)
        assert sorted(top) == sorted([(ids["Alpha"], "t1"), (ids["Beta"], "t5")])
        top = await cookbook.most_urgent_per_project(session, 2)
        assert sorted(top) == sorted(
            [(ids["Alpha"], "t1"), (ids["Alpha"], "t2"), (ids["Beta"], "t5"), (ids["Beta"], "t4")]
        )
        found = {text: [p.name for p in await cookbook.search_projects(session, text)]
                 for text in ("a_1", "100%", "ALP", "%", "_")}
        assert found == {
            "a_1": ["Gamma_1"], "100%": ["100% done"], "ALP": ["Alpha"],
            "%": ["100% done"], "_": ["Gamma_1"],
        }, found
        plan = await cookbook.explain(session, cookbook.search_statement("a_1"))
        assert plan, plan
        dialect = engine.dialect
        if dialect.name != "sqlite":  # SQLite's plan does not show the values
            # The statement explained is the one searched with, pattern and all.
            # (PostgreSQL shows the pattern with its own escape character, a backslash.)
            assert any("%a/_1%" in line or "%a\\\\_1%" in line for line in plan), plan
            assert not any("%%" in line for line in plan), plan
        if dialect.name == "postgresql":
            assert any("actual time" in line for line in plan), plan
            await session.execute(text("SET enable_seqscan = off"))
            plan = await cookbook.explain(session, cookbook.search_statement("a_1"))
            assert any("ix_project_name_trgm" in line for line in plan), plan
        elif dialect.name == "mysql":
            assert any("r_rows" in line for line in plan), plan
        else:
            assert any("SCAN" in line or "SEARCH" in line for line in plan), plan
    print("cookbook: every check passed")


asyncio.run(check())
"""


def test_the_cookbook_runs_as_written(service: tuple[Rendered, Path]) -> None:
    rendered, copy = service
    page = PAGES / "cookbook.md"
    database = rendered.answers["database"]
    if database == "postgresql":
        for path, source in revisions(page).items():
            (copy / path).write_text(source)
    (copy / "cookbook.py").write_text(module(page, rendered.package))
    script = PRELUDE.format(package=rendered.package) + COOKBOOK_CHECKS
    (copy / "check_cookbook.py").write_text(script)
    bin_dir = service_bin(rendered)
    with scratch_database(database, f"cookbook-{rendered.name}") as url:
        env = {"DATABASE_URL": url, "PYTHONPATH": f"{copy / 'src'}:{copy}"}
        migrated = run(bin_dir, copy, "alembic", "upgrade", "head", env=env)
        assert migrated.ok, migrated.output
        outcome = run(bin_dir, copy, "python", "check_cookbook.py", env=env)
        assert outcome.ok and "every check passed" in outcome.output, outcome.output


def service_bin(rendered: Rendered) -> Path:
    from .harness.venv import service_venv

    return service_venv(rendered.path, rendered.python_version)


DATA_CHECKS = """
PADDED, CLEAN = 2001, 3  # more than two of the revision's batches


async def seed(start: int, padded: int, clean: int) -> None:
    async with sessions() as session, session.begin():
        for n in range(start, start + padded + clean):
            name = f"  p{n:05d}  " if n < start + padded else f"p{n:05d}"
            session.add(Project(name=name, slug=f"p{n:05d}"))


async def names() -> dict[str, tuple[str, int]]:
    async with sessions() as session:
        rows = await session.execute(select(Project.slug, Project.name, Project.version))
        return {slug: (name, version) for slug, name, version in rows}


async def main(step: str) -> None:
    if step == "seed":
        await seed(0, PADDED, CLEAN)
    elif step == "trimmed":
        found = await names()
        assert len(found) == PADDED + CLEAN
        assert all(name == slug for slug, (name, _) in found.items()), found
        versions = sorted(version for _, version in found.values())
        assert versions == [1] * CLEAN + [2] * PADDED
    elif step == "downgraded":
        # The downgrade left the rows as they were; one more row needs trimming.
        await main("trimmed")
        await seed(PADDED + CLEAN, 1, 0)
    elif step.startswith("stamped-at-"):
        found = await names()
        assert found[f"p{PADDED + CLEAN:05d}"] == (f"  p{PADDED + CLEAN:05d}  ", 1)
        async with sessions() as session:
            current = await session.scalar(text("SELECT version_num FROM alembic_version"))
        assert current == step.removeprefix("stamped-at-"), current
    print(f"data migration: {step} done")


asyncio.run(main(sys.argv[1]))
"""


def test_the_data_migration_runs_as_written_and_stamps(service: tuple[Rendered, Path]) -> None:
    rendered, copy = service
    docs = revisions(PAGES / "migrations.md")
    readme = revisions_in((copy / "README.md").read_text())
    # The service's README shows the revision the documentation shows.
    assert readme == docs and len(docs) == 1, readme
    ((path, source),) = docs.items()
    revision = re.search(r'^revision: str = "(\w+)"', source, flags=re.MULTILINE)
    assert revision is not None
    (copy / path).write_text(source)
    (copy / "check_data.py").write_text(PRELUDE.format(package=rendered.package) + DATA_CHECKS)
    bin_dir = service_bin(rendered)
    for check in (["check"], ["format", "--check"]):
        linted = run(bin_dir, copy, "ruff", *check, "--no-cache", path)
        assert linted.ok, linted.output
    database = rendered.answers["database"]
    with scratch_database(database, f"data-{rendered.name}") as url:
        env = {"DATABASE_URL": url, "PYTHONPATH": str(copy / "src")}

        def step(*args: str) -> str:
            outcome = run(bin_dir, copy, *args, env=env)
            assert outcome.ok, outcome.output
            return outcome.output

        step("alembic", "upgrade", EXAMPLE_HEAD)
        step("python", "check_data.py", "seed")
        step("alembic", "upgrade", "head")
        step("python", "check_data.py", "trimmed")
        step("alembic", "downgrade", EXAMPLE_HEAD)
        step("python", "check_data.py", "downgraded")
        # Stamped, the revision counts as done and its work is not run.
        step("alembic", "stamp", revision[1])
        step("python", "check_data.py", f"stamped-at-{revision[1]}")


def revisions_in(text: str) -> dict[str, str]:
    found = {}
    for block in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL):
        match = REVISION_FILE.match(block)
        if match:
            found[match[1]] = block[match.end() :]
    return found
