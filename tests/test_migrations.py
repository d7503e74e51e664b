"""Full tier: Alembic's own command line on each variant, against a fresh database."""

from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import scratch_database
from .harness.run import run

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
