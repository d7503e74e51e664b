"""Full tier: Alembic's own command line on each variant, against a fresh database."""

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from copier import run_copy

from .conftest import Rendered
from .harness.databases import scratch_database, two_roles
from .harness.paths import TEMPLATE_ROOT
from .harness.releases import BY_TAG
from .harness.run import run
from .variants import VARIANTS

pytestmark = pytest.mark.full


def test_alembic_cli_upgrade_check_downgrade(
    variant: Rendered, venv_for: Callable[[Rendered], Path]
) -> None:
    bin_dir = venv_for(variant)
    with scratch_database(variant.answers["database"], variant.name) as url:
        env = {"DATABASE_URL": url}

        def alembic(*args: str) -> str:
            outcome = run(bin_dir, variant.path, "alembic", *args, env=env)
            assert outcome.ok, outcome.output
            return outcome.output

        # The example domain's revisions, or a skeleton's users' (auth=password).
        has_revisions = variant.answers["example_domain"] or variant.answers["auth"] == "password"
        assert "(head)" not in alembic("current")
        alembic("upgrade", "head")
        assert ("(head)" in alembic("current")) is has_revisions
        assert "No new upgrade operations detected" in alembic("check")
        assert len(alembic("heads").strip().splitlines()) == int(has_revisions)
        alembic("downgrade", "base")
        assert "(head)" not in alembic("current")
        sql = alembic("upgrade", "head", "--sql")
        if variant.answers["example_domain"]:
            assert "CREATE TABLE project" in sql and "CONSTRAINT pk_project PRIMARY KEY" in sql
        elif variant.answers["auth"] == "password":
            assert "CREATE TABLE auth_user" in sql and "CREATE TABLE project" not in sql
        else:
            assert "CREATE TABLE" not in sql  # nothing to migrate yet, and no error for it
        alembic("upgrade", "head")
        # A new revision comes out of script.py.mako lint-clean and formatted.
        alembic("revision", "--autogenerate", "-m", "nothing changed")
        (revision,) = (variant.path / "migrations" / "versions").glob("*_nothing_changed.py")
        try:
            for check in (["check"], ["format", "--check"]):
                linted = run(bin_dir, variant.path, "ruff", *check, "--no-cache", str(revision))
                assert linted.ok, linted.output + revision.read_text()
        finally:
            revision.unlink()


# v0.3.0's head: databases that release migrated stand here.
RELEASED_HEAD = "aa8e4e81280c"
# One variant with the example domain (the revisions) per backend and way of deleting,
# what the revisions after that head depend on.
WITH_REVISIONS = sorted(
    {
        (answers.get("database", "postgresql"), answers.get("soft_delete", True)): name
        for name, answers in reversed(VARIANTS.items())
        if answers.get("example_domain", True)
    }.values()
)


@pytest.mark.parametrize("name", WITH_REVISIONS)
def test_a_database_of_the_last_release_upgrades_to_the_models(
    name: str, render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    """A database v0.3.0 migrated (its head) takes this release's revisions and then
    matches the models, whatever the backend and the way of deleting: the example domain
    is one code now, and the revisions after that head bring each database to it (the
    listing indexes' names on MariaDB with soft delete, PostgreSQL's description default).
    Down again to that head, and up."""
    variant = render(name)
    bin_dir = venv_for(variant)
    with scratch_database(variant.answers["database"], f"released-{variant.name}") as url:

        def alembic(*args: str) -> str:
            outcome = run(bin_dir, variant.path, "alembic", *args, env={"DATABASE_URL": url})
            assert outcome.ok, outcome.output
            return outcome.output

        alembic("upgrade", RELEASED_HEAD)
        alembic("upgrade", "head")
        assert "No new upgrade operations detected" in alembic("check")
        alembic("downgrade", RELEASED_HEAD)
        assert RELEASED_HEAD in alembic("current")
        alembic("upgrade", "head")
        assert "No new upgrade operations detected" in alembic("check")


def test_two_revisions_with_one_message_in_one_minute_are_two_files(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    """`alembic revision -m` twice with the same message (two merges of heads, say) within
    a minute: Alembic writes over a file of the same name without a word, so the first
    revision would vanish and the second would point at a revision nobody has."""
    rendered = render("sqlite-int-hard-delete")
    bin_dir = venv_for(rendered)
    versions = rendered.path / "migrations" / "versions"
    before = set(versions.glob("*.py"))
    with scratch_database("sqlite", rendered.name) as url:
        for _ in range(2):
            made = run(
                bin_dir,
                rendered.path,
                "alembic",
                "revision",
                "-m",
                "same words",
                env={"DATABASE_URL": url},
            )
            assert made.ok, made.output
    try:
        assert len(set(versions.glob("*.py")) - before) == 2
    finally:
        for path in set(versions.glob("*.py")) - before:
            path.unlink()


# Every combination of the answers the example domain's revisions depend on.
EXAMPLE_DOMAIN = sorted(
    {
        (
            a.get("database", "postgresql"),
            a.get("primary_key", "uuid"),
            a.get("soft_delete", True),
        ): n
        for n, a in reversed(VARIANTS.items())
        if a.get("example_domain", True)
    }.values()
)
RUNNING = re.compile(r"Running (upgrade|downgrade) .*$", re.MULTILINE)
# The files of the revisions v0.3.0 released, rendered from Jinja then.
RELEASED_FILES = (
    "2026-11-22_0000_initial_schema.py",
    "2026-12-07_0000_listing_indexes_and_comments.py",
)
# What a database holds, as SQLAlchemy reflects it, with the DDL SQLite and MariaDB keep.
SCHEMA = """
import asyncio, json, sys
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

def dump(connection):
    inspector = sa.inspect(connection)
    schema = {}
    for table in sorted(inspector.get_table_names()):
        schema[table] = {
            "columns": inspector.get_columns(table),
            "pk": inspector.get_pk_constraint(table),
            "foreign keys": inspector.get_foreign_keys(table),
            "unique": inspector.get_unique_constraints(table),
            "checks": inspector.get_check_constraints(table),
            "indexes": inspector.get_indexes(table),
            "comment": (inspector.get_table_comment(table)
                        if connection.dialect.supports_comments else None),
            "options": inspector.get_table_options(table),
            "rows": [list(row) for row in connection.execute(
                sa.select(sa.text("*")).select_from(sa.table(table)))],
        }
    name = connection.dialect.name
    if name == "sqlite":
        # A table batch mode copied lists its constraints in no fixed order: each
        # statement's clauses, sorted.
        schema["ddl"] = [
            [kind, name, sorted(line.strip().rstrip(",").strip() for line in (sql or "").splitlines())]
            for kind, name, sql in connection.exec_driver_sql(
                "SELECT type, name, sql FROM sqlite_master ORDER BY name")
        ]
    if name == "mysql":
        schema["ddl"] = [connection.exec_driver_sql(f"SHOW CREATE TABLE `{t}`").one()[1]
                         for t in sorted(inspector.get_table_names())]
    if name == "postgresql":
        schema["ddl"] = list(map(list, connection.exec_driver_sql(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' "
            "ORDER BY indexname")))
    return schema

async def main():
    engine = create_async_engine(sys.argv[1])
    async with engine.connect() as connection:
        schema = await connection.run_sync(dump)
    with open(sys.argv[2], "w") as out:
        json.dump(schema, out, default=str, sort_keys=True)
    await engine.dispose()

asyncio.run(main())
"""


@pytest.mark.parametrize("name", EXAMPLE_DOMAIN)
def test_the_released_revisions_leave_the_schema_they_left(
    name: str,
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    """The revisions v0.3.0 released (12d2ea3c0a80 and aa8e4e81280c), rendered from Jinja
    then and branching at run time now, leave a database exactly as they did, up, down
    and in the script `--sql` writes: the same tables, columns, comments, indexes, keys,
    options and recorded revisions, on every backend, key type and way of deleting."""
    variant = render(name)
    bin_dir = venv_for(variant)
    released = tmp_path / "released"
    data = {key: variant.answers[key] for key in ("database", "primary_key", "soft_delete")}
    run_copy(
        str(TEMPLATE_ROOT),
        released,
        data={"project_name": "Released", **data},
        defaults=True,
        vcs_ref=BY_TAG["v0.3.0"].commit,
        quiet=True,
    )
    old = Path(shutil.copytree(variant.path, tmp_path / "old"))
    for revision in RELEASED_FILES:
        shutil.copy(
            released / "migrations" / "versions" / revision, old / "migrations" / "versions"
        )
    (tmp_path / "schema.py").write_text(SCHEMA)
    states: dict[str, tuple[object, ...]] = {}
    for label, project in (("old", old), ("new", variant.path)):
        with scratch_database(variant.answers["database"], f"aa8e-{label}-{name}") as url:

            def alembic(*args: str, at: Path = project, url: str = url) -> str:
                outcome = run(bin_dir, at, "alembic", *args, env={"DATABASE_URL": url})
                assert outcome.ok, outcome.output
                return outcome.output

            alembic("upgrade", "12d2ea3c0a80")
            initial = schema(bin_dir, project, url, tmp_path / f"{label}-initial.json")
            alembic("upgrade", "aa8e4e81280c")
            upgraded = schema(bin_dir, project, url, tmp_path / f"{label}-up.json")
            script = alembic("upgrade", "aa8e4e81280c", "--sql")
            # The same statements; the lines naming the revision quote its message,
            # which names what the revision does on any database now.
            script = RUNNING.sub("", script)
            alembic("downgrade", "12d2ea3c0a80")
            downgraded = schema(bin_dir, project, url, tmp_path / f"{label}-down.json")
            alembic("downgrade", "base")
            emptied = schema(bin_dir, project, url, tmp_path / f"{label}-base.json")
            assert set(emptied) <= {"alembic_version", "alembic_lineage", "ddl"}, emptied
            states[label] = (initial, upgraded, downgraded, script)
    new, old_state = states["new"], states["old"]
    assert new[0] == old_state[0], "the schema of the initial revision"
    assert new[1] == old_state[1], "the schema after the upgrade"
    assert new[2] == old_state[2], "the schema after the downgrade"
    assert new[3] == old_state[3], "the script `upgrade --sql` writes"


def schema(bin_dir: Path, project: Path, url: str, into: Path) -> object:
    """The schema of the database at `url`, reflected by the service's SQLAlchemy."""
    dumped = run(bin_dir, project, "python", str(into.parent / "schema.py"), url, str(into))
    assert dumped.ok, dumped.output
    return json.loads(into.read_text())


def test_the_offline_script_applied_by_the_owner_serves_the_service_role(
    render: Callable[[str], Rendered], venv_for: Callable[[Rendered], Path]
) -> None:
    """`alembic upgrade head --sql` writes the script a DBA reviews and applies, as the
    owner, after the roles command: the service's role then reads and writes the tables
    (the owner's default privileges), and behind PgBouncer the script sets the timeouts
    that a migration run sets as the database's settings (`grant_service`)."""
    rendered = render("default")
    bin_dir = venv_for(rendered)
    with (
        scratch_database("postgresql", "offline") as url,
        two_roles(bin_dir, rendered.path, rendered.package, "postgresql", url) as roles,
    ):
        # DATABASE_URL at PgBouncer (nothing connects to write the script).
        behind = {
            "DATABASE_URL": roles.service.replace(":5432/", ":6432/"),
            "DATABASE_DIRECT_URL": roles.service,
            "DATABASE_OWNER_URL": roles.owner,
            "DB_BEHIND_PGBOUNCER": "true",
            "DB_STATEMENT_TIMEOUT_MS": "4321",
        }
        written = subprocess.run(
            [str(bin_dir / "alembic"), "upgrade", "head", "--sql"],
            cwd=rendered.path,
            env={"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root"), **behind},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert written.returncode == 0, written.stderr
        applied = subprocess.run(
            ["psql", "-v", "ON_ERROR_STOP=1", "-qX", libpq(roles.owner)],
            input=written.stdout,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert applied.returncode == 0, applied.stderr
        rows = subprocess.run(
            ["psql", "-qXAt", libpq(roles.service), "-c", "SHOW statement_timeout"]
            + ["-c", "SELECT count(*) FROM project"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert rows.returncode == 0, rows.stderr
        assert rows.stdout.split() == ["4321ms", "0"]


def libpq(url: str) -> str:
    """A SQLAlchemy URL as psql reads it."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)
