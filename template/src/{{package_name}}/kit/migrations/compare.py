"""How autogenerate compares the models with a database (`env.py`, `alembic check`)."""

from collections.abc import Callable
from typing import Any

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Column
from sqlalchemy import Identity

CompareServerDefault = Callable[
    [MigrationContext, Column[Any], Column[Any], str | None, Any, str | None], bool | None
]


def compare_server_defaults(dialect: str) -> bool | CompareServerDefault:
    """Alembic's `compare_server_default` option for a database of `dialect`.

    PostgreSQL reflects an identity column as one, and Alembic compares it as it is (a
    hook there would be handed the reflected identity as text, which it is not).
    """
    return True if dialect == "postgresql" else _identity_is_no_default


def _identity_is_no_default(
    context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_default: str | None,
    metadata_default: Any,
    rendered_metadata_default: str | None,
) -> bool | None:
    """An `IntKey` is an identity column in the models, which MariaDB and MySQL make
    AUTO_INCREMENT and SQLite its rowid; they reflect no identity for Alembic to
    compare. The column is as the models want it: no change. None leaves any other
    default to Alembic."""
    if isinstance(metadata_default, Identity):
        return False
    return None
