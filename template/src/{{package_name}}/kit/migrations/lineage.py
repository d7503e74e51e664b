"""The line of migration history the database is on, recorded next to `alembic_version`.

`alembic_version` holds one revision. A pod of an older release, whose scripts
stop before that revision, cannot tell from it alone whether the database moved on
from its head (a newer release migrated first) or went down another line of history.
So every migration run also records the revision it leaves the database at and all
its ancestors: the older release then looks for its own head among them.

The table belongs to the migration machinery, like `alembic_version`: it has a
`MetaData` of its own, so the models never see it, and autogenerate leaves it out
(`include_name`).
"""

from collections.abc import Collection

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Column
from sqlalchemy import Connection
from sqlalchemy import MetaData
from sqlalchemy import String
from sqlalchemy import Table
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy.schema import CreateTable

from ..jobs.schema import JOB_TABLES

LINEAGE = Table(
    "alembic_lineage",
    MetaData(),
    # As long as alembic_version's own column; the primary key is the index lookups use.
    Column("revision", String(32), primary_key=True),
)
MIGRATION_TABLES = frozenset({"alembic_version", LINEAGE.name})


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Autogenerate's `include_name` hook: the models' tables, not the migrations' own
    nor the background jobs' (their migration is frozen from pgqueuer's statements)."""
    return not (type_ == "table" and name in MIGRATION_TABLES | JOB_TABLES)


def ancestry(scripts: ScriptDirectory, heads: Collection[str]) -> set[str]:
    """These revisions and every revision on the way to them from the first one."""
    return {script.revision for head in heads for script in scripts.iterate_revisions(head, "base")}


def record(migration: MigrationContext, scripts: ScriptDirectory, heads: Collection[str]) -> None:
    """Rewrite the recorded lineage for the revisions a migration run ended at.

    Runs inside the migration's transaction (where the backend has transactional DDL),
    so the record and `alembic_version` change together. With `--sql` the statements
    are written out with the migration's, for whoever runs them.
    """
    if migration.as_sql or migration.connection is None:
        migration.execute(CreateTable(LINEAGE, if_not_exists=True))
    else:
        LINEAGE.create(migration.connection, checkfirst=True)
    migration.execute(LINEAGE.delete())
    revisions = sorted(ancestry(scripts, heads))
    if revisions:
        migration.execute(LINEAGE.insert().values([{"revision": r} for r in revisions]))


def recorded(connection: Connection, revisions: Collection[str]) -> set[str] | None:
    """Which of these revisions the recorded lineage holds (None: nothing is recorded,
    as in a database last migrated before the record existed)."""
    if not inspect(connection).has_table(LINEAGE.name):
        return None
    query = select(LINEAGE.c.revision).where(LINEAGE.c.revision.in_(revisions))
    return set(connection.scalars(query))
