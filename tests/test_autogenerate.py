"""Full tier: a model added as a user would, and the migration Alembic writes for it, as written.

On each backend, a copy of a render gets a new model (`Comment`, under the tasks
package: the key mixin, timestamps, a foreign key to `task.id`, a text column),
registered in `models.py`. `alembic revision --autogenerate` writes its migration, which
is then used untouched: upgrade, `alembic check`, downgrade, upgrade. The service stays
lint-clean, formatted and mypy --strict clean.
"""

import ast
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import Rendered
from .harness.databases import scratch_database
from .harness.run import run

pytestmark = pytest.mark.full

# One render of each backend, with the example domain (the comment belongs to a task).
BACKENDS = ["default", "mysql-int-soft-delete", "sqlite-int-hard-delete"]

# Where the new resource lives, inside the service's package.
COMMENTS = "tasks/comments"

COMMENTS_INIT = '"""Comments on tasks: a resource added after the first render."""\n'

COMMENT_MODEL = """from sqlalchemy import ForeignKey
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ...db.base import Base
from ...db.keys import Key
from ...db.keys import KeyType
from ...db.keys import PrimaryKeyMixin
from ...db.mixins import TimestampMixin


class Comment(PrimaryKeyMixin, TimestampMixin, Base):
    __tablename__ = "comment"

    # Indexed: a task's comments are listed by it, and its deletion cascades through it.
    task_id: Mapped[Key] = mapped_column(
        KeyType, ForeignKey("task.id", ondelete="CASCADE"), index=True
    )
    body: Mapped[str] = mapped_column(Text)
"""


def add_comments(project: Path, package: str) -> None:
    """Add the comments resource as a user would: its files, then its model in the registry."""
    resource = project / "src" / package / COMMENTS
    resource.mkdir()
    (resource / "__init__.py").write_text(COMMENTS_INIT)
    (resource / "models.py").write_text(COMMENT_MODEL)
    module = "." + COMMENTS.replace("/", ".") + ".models"
    register_model(project / "src" / package / "models.py", module, "Comment")


def register_model(registry: Path, module: str, name: str) -> None:
    """Import `name` in the model registry and export it, both in the order ruff keeps."""
    lines = registry.read_text().splitlines()
    imports = [i for i, line in enumerate(lines) if line.startswith("from .")]
    assert imports, f"no model imports in {registry}:\n" + "\n".join(lines)
    first, last = imports[0], imports[-1]
    lines[first : last + 1] = sorted([*lines[first : last + 1], f"from {module} import {name}"])
    text = "\n".join(lines) + "\n"
    exported = re.search(r"^__all__ = (\[.*?\])$", text, flags=re.MULTILINE | re.DOTALL)
    assert exported, f"no __all__ in {registry}:\n{text}"
    names: list[str] = [*ast.literal_eval(exported.group(1)), name]
    # ruff's RUF022 order: CONSTANTS, then Classes, then the rest, each alphabetical.
    names.sort(key=lambda n: (not n.isupper(), not n[0].isupper(), n))
    listed = ", ".join(f'"{n}"' for n in names)
    registry.write_text(text.replace(exported.group(0), f"__all__ = [{listed}]"))


@pytest.mark.parametrize("name", BACKENDS)
def test_a_new_model_migrates_with_the_migration_autogenerate_writes(
    name: str,
    render: Callable[[str], Rendered],
    venv_for: Callable[[Rendered], Path],
    tmp_path: Path,
) -> None:
    rendered = render(name)
    bin_dir = venv_for(rendered)
    project = tmp_path / rendered.path.name
    shutil.copytree(rendered.path, project)  # the render is shared by the session's tests
    add_comments(project, rendered.package)

    with scratch_database(rendered.answers["database"], f"autogen-{name}") as url:

        def alembic(*args: str) -> str:
            outcome = run(bin_dir, project, "alembic", *args, env={"DATABASE_URL": url})
            assert outcome.ok, outcome.output
            return outcome.output

        alembic("upgrade", "head")
        alembic("revision", "--autogenerate", "-m", "add comment")
        (revision,) = (project / "migrations" / "versions").glob("*_add_comment.py")
        migration = revision.read_text()
        assert re.search(r'op.create_table\(\s*"comment"', migration), migration
        assert rendered.package not in migration, "a migration must not import the service"

        alembic("upgrade", "head")
        assert "No new upgrade operations detected" in alembic("check")
        alembic("downgrade", "-1")
        assert "(head)" not in alembic("current")
        alembic("upgrade", "head")  # creates the table again: the downgrade dropped it
        assert "No new upgrade operations detected" in alembic("check")

    for tool in (
        ["ruff", "check", "--no-cache", "."],
        ["ruff", "format", "--no-cache", "--check", "."],
        ["mypy", "--strict", "--cache-dir", "/dev/null"],
    ):
        outcome = run(bin_dir, project, *tool)
        assert outcome.ok, f"{' '.join(tool)}:\n{outcome.output}\n{revision.name}:\n{migration}"
