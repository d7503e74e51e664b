"""Full tier: Alembic's own command line on each variant, against a fresh database."""

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import scratch_database
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

        has_revisions = bool(variant.answers["example_domain"])
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
