"""The `password` answer's migration creates what `kit/auth/password/models.py`
declares, on each backend: autogenerate finds nothing to change, and the downgrade
leaves no table behind.

The migration is one file of the template (migrations/versions/), rendered only with
that answer; its one templated value, the revision it follows, is left out here.
"""

import re
import types
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.operations import Operations
from service.kit.auth.password.models import LoginSession, LoginThrottle, RefreshToken, User
from service.kit.db.base import Base
from service.kit.db.dialect import one_off_connect_args
from service.kit.migrations.compare import compare_server_defaults
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

from .databases import scratch_database

VERSIONS = Path(__file__).resolve().parents[2] / "template" / "migrations" / "versions"
TABLES = {model.__tablename__ for model in (User, LoginSession, RefreshToken, LoginThrottle)}


def migration() -> types.ModuleType:
    (path,) = VERSIONS.glob("*password_users.py*")
    # The revision it follows depends on the other answers: none here.
    source = re.sub(r"\{\{.*?\}\}", lambda m: "None" if "'" in m.group(0) else "", path.read_text())
    module = types.ModuleType("password_users")
    exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - the template's own file
    return module


def _ours(item: Any, name: str | None, kind: str, reflected: bool, compare_to: Any) -> bool:
    """These tables, and what they hold; none of the kit's test resources."""
    table = name if kind == "table" else getattr(getattr(item, "table", None), "name", None)
    return table in TABLES


def upgrade_then_compare(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection,
        opts={
            "include_object": _ours,
            "compare_type": True,
            "compare_server_default": compare_server_defaults(connection.dialect.name),
        },
    )
    with Operations.context(context):
        migration().upgrade()
    return list(compare_metadata(context, Base.metadata))


def downgrade(connection: Connection) -> set[str]:
    with Operations.context(MigrationContext.configure(connection)):
        migration().downgrade()
    return set(inspect(connection).get_table_names()) & TABLES


async def test_the_migration_creates_what_the_models_declare() -> None:
    async with scratch_database("password-migration") as url:
        engine = create_async_engine(url, connect_args=one_off_connect_args(url))
        try:
            async with engine.begin() as conn:
                assert await conn.run_sync(upgrade_then_compare) == []
            async with engine.begin() as conn:
                assert await conn.run_sync(downgrade) == set()
        finally:
            await engine.dispose()
