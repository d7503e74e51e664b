"""`copier update` brings a new release into a service its users have already changed."""

import filecmp
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from copier import run_copy, run_update

from .conftest import Rendered
from .harness import releases
from .harness.databases import admin_url
from .harness.run import parse_pytest_summary, run

ANSWERS = {"project_name": "Ledger", "author_email": "ops@example.org"}
COPIER = str(Path(sys.executable).parent / "copier")

NOTE_MODEL = '''"""Notes: a model the service's team added after the first render."""

from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ..db.base import Base
from ..db.mixins import TimestampMixin
from ..db.mixins import UUIDPrimaryKeyMixin


class Note(UUIDPrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "note"

    body: Mapped[str] = mapped_column(Text)
'''

NOTE_MIGRATION = '''"""add note

Revision ID: 7b1e0c0ffee1
Revises: {down}
Created: 2026-12-01 12:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7b1e0c0ffee1"
down_revision: str | Sequence[str] | None = "{down}"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "note",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_note")),
    )


def downgrade() -> None:
    op.drop_table("note")
'''

ROUTE = """

@router.get("/count", summary="Added by the team")
async def count_projects(projects: Projects) -> dict[str, int]:
    return {"count": await projects.repository.count()}
"""


@pytest.fixture(scope="module")
def template_releases(tmp_path_factory: pytest.TempPathFactory) -> releases.Releases:
    return releases.build(tmp_path_factory.mktemp("releases"))


def render(src: releases.Releases, ref: str, destination: Path) -> Path:
    run_copy(str(src.repo), destination, data=ANSWERS, defaults=True, vcs_ref=ref, quiet=True)
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


def edit_like_a_user(project: Path, package: str) -> dict[Path, str]:
    """The edits teams make after the first render; returns text each file must keep."""
    src = project / "src" / package
    head = next((project / "migrations" / "versions").glob("*.py")).read_text()
    down = head.split('revision: str = "')[1].split('"')[0]
    (src / "notes").mkdir()
    (src / "notes" / "__init__.py").write_text('"""Notes."""\n')
    (src / "notes" / "models.py").write_text(NOTE_MODEL)
    migration = project / "migrations" / "versions" / "2026-12-01_1200_add_note.py"
    migration.write_text(NOTE_MIGRATION.format(down=down))
    models = src / "models.py"
    text = models.read_text()
    text = text.replace(
        "from .db.base import Base\n", "from .db.base import Base\nfrom .notes.models import Note\n"
    )
    text = text.replace('__all__ = ["Base", ', '__all__ = ["Base", "Note", ')
    models.write_text(text)
    config = src / "core" / "config.py"
    text = config.read_text()
    assert "max_page_size: int = Field(default=100, ge=1, le=1000)" in text
    config.write_text(
        text.replace("Field(default=100, ge=1, le=1000)", "Field(default=250, ge=1, le=1000)")
    )
    (project / ".env").write_text("DB_POOL_SIZE=7\n")
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\n## Our runbook\n\nPage the ledger team.\n")
    router = src / "projects" / "router.py"
    router.write_text(router.read_text() + ROUTE)
    return {
        models: "from .notes.models import Note",
        config: "max_page_size: int = Field(default=250, ge=1, le=1000)",
        project / ".env": "DB_POOL_SIZE=7",
        readme: "## Our runbook",
        router: '"/count"',
        migration: 'revision: str = "7b1e0c0ffee1"',
        src / "notes" / "models.py": "class Note(UUIDPrimaryKeyMixin, TimestampMixin, Base):",
    }


def assert_clean_merge(project: Path) -> None:
    status = releases.git(project, "status", "--porcelain")
    assert not [line for line in status.splitlines() if line[:2] in {"UU", "AA", "DU", "UD"}]
    assert not list(project.rglob("*.rej"))
    for path in project.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            text = path.read_text(errors="replace")
            assert "<<<<<<< " not in text and ">>>>>>> " not in text, path


def recorded_commit(project: Path) -> str:
    return str(yaml.safe_load((project / ".copier-answers.yml").read_text())["_commit"])


def test_check_update_reports_the_new_release(
    template_releases: releases.Releases, tmp_path: Path
) -> None:
    project = render(template_releases, template_releases.old, tmp_path / "svc")
    commit_all(project, "first render")

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


def test_updating_an_untouched_service_equals_a_fresh_render(
    template_releases: releases.Releases, tmp_path: Path
) -> None:
    updated = render(template_releases, template_releases.old, tmp_path / "updated")
    commit_all(updated, "first render")
    update(updated, template_releases.new)
    fresh = render(template_releases, template_releases.new, tmp_path / "fresh")
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
def test_update_keeps_every_user_edit_and_the_tests_pass(
    template_releases: releases.Releases,
    tmp_path: Path,
    venv_for: Callable[[Rendered], Path],
) -> None:
    project = render(template_releases, template_releases.old, tmp_path / "svc")
    commit_all(project, "first render")
    answers = yaml.safe_load((project / ".copier-answers.yml").read_text())
    kept = edit_like_a_user(project, answers["package_name"])
    commit_all(project, "our changes")
    update(project, template_releases.new)
    assert_clean_merge(project)
    for path, text in kept.items():
        assert text in path.read_text(), f"{path} lost {text!r}"
    assert recorded_commit(project) == template_releases.new
    rendered = Rendered(
        "updated", project, yaml.safe_load((project / ".copier-answers.yml").read_text())
    )
    outcome = run(
        venv_for(rendered),
        project,
        "pytest",
        "-p",
        "no:cacheprovider",
        env={"DATABASE_URL": admin_url("postgresql", tmp_path)},
    )
    counts = parse_pytest_summary(outcome.output)
    assert outcome.ok, outcome.output[-5000:]
    assert counts.passed > 0 and counts.failed == 0
