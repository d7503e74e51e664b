"""The tables of background jobs: pgqueuer's queue, and the kit's record of effects.

The jobs migration (migrations/versions/, rendered with the `jobs` answer) creates
them from statements frozen at the pinned pgqueuer release; `schema_drift` says what
that release would still change, so a test and the worker can tell that the database
holds exactly the schema the installed pgqueuer expects.
"""

from typing import TYPE_CHECKING

from sqlalchemy import Column
from sqlalchemy import DateTime
from sqlalchemy import MetaData
from sqlalchemy import Table
from sqlalchemy import Text
from sqlalchemy import func

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped,import-not-found,unused-ignore]

# pgqueuer's tables: the queue, its event log, the schedules and the statistics.
QUEUE_TABLES = frozenset({"pgqueuer", "pgqueuer_log", "pgqueuer_schedules", "pgqueuer_statistics"})
# One row per effect a job has had (`once`): a job delivered twice finds its row.
# A `MetaData` of its own, as the migrations' tables: the models never see it.
JOB_EFFECTS = Table(
    "job_effects",
    MetaData(),
    Column("key", Text, primary_key=True),
    Column("done_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)
# What autogenerate leaves out: tables the models do not declare, owned by the jobs.
JOB_TABLES = QUEUE_TABLES | {JOB_EFFECTS.name}


async def schema_drift(connection: "asyncpg.Connection") -> list[str]:
    """The statements the installed pgqueuer would run to reach its own schema: none
    when the migrations installed the schema it expects."""
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    # In a transaction: behind PgBouncer, asyncpg's type introspection (JIT off, then
    # on) must not be split across server connections other clients are handed.
    async with connection.transaction():
        plan = await Queries(AsyncpgDriver(connection)).plan_upgrade()
    return list(plan.statements)
