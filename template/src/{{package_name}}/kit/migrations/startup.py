"""Alembic from inside the service: the schema's head and the database's revision.

Also the migration run under a lock (`alembic upgrade head`, and the opt-in start-up
upgrade, which N replicas starting together run exactly once).
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ..db.dialect import lock_timed_out
from ..db.dialect import migration_lock
from ..db.dialect import one_off_connect_args
from ..db.engine import cannot_connect
from ..settings import Settings
from .lineage import ancestry
from .lineage import recorded
from .roles import grant_service

log = logging.getLogger(__name__)


def alembic_config(ini_path: Path) -> Config:
    return Config(str(ini_path))


def schema_head(config: Config) -> str | None:
    """The newest revision in the migration scripts (None when there are none)."""
    return ScriptDirectory.from_config(config).get_current_head()


@dataclass(frozen=True)
class Schema:
    """This code's migrations, as readiness needs them: its head and the revisions it knows.

    Mid-deploy a newer release has often migrated first: the database is then at a
    revision this code has never seen, which is the normal state of a rolling deploy.
    Only a database behind this code, or on another line of history (a revision of
    this code off the way to its head, or one whose recorded lineage does not pass
    through this code's head), makes the service unready.
    """

    head: str | None
    lineage: frozenset[str]
    known: frozenset[str]

    @classmethod
    def of(cls, config: Config) -> "Schema":
        scripts = ScriptDirectory.from_config(config)
        head = scripts.get_current_head()
        known = {r.revision for r in scripts.walk_revisions()}
        return cls(head, frozenset(ancestry(scripts, [head] if head else [])), frozenset(known))

    def state(self, connection: Connection) -> str:
        """ok, ahead (a newer release's revision), behind or branch (another line).

        At this code's head it reads `alembic_version` only; only at a revision this
        code does not know does it read the lineage the database recorded
        (`kit/migrations/lineage.py`): a table lookup and one indexed SELECT.
        """
        current = current_revision(connection)
        if current == self.head:
            return "ok"
        if current is None or current in self.lineage:
            return "behind"
        if current in self.known:
            return "branch"
        if self.head is None:  # no migrations here: every line of history starts after ours
            return "ahead"
        holds = recorded(connection, {current, self.head})
        if holds is None or current not in holds:
            # Nothing recorded, or recorded by a run that did not end here (on MariaDB a
            # run that failed part way has committed its DDL and its revisions, not the
            # record): nothing tells a newer revision from another line, and a deploy
            # runs one.
            return "ahead"
        return "ahead" if self.head in holds else "branch"


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None before the first migration)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(connection: Connection, config: Config, revision: str = "head") -> None:
    """Run migrations on a connection the caller owns (`env.py` uses it as is).

    The caller's logging stays as it is: alembic.ini's (which `env.py` applies for the
    `alembic` command) would turn the service's JSON lines into Alembic's text."""
    config.attributes["connection"] = connection
    config.attributes["configure_logger"] = False
    command.upgrade(config, revision)


class MigrationStopped(Exception):
    """A migration run that cannot go on: why, in one line for the person running it."""


async def migrate_under_lock(
    settings: Settings, name: str, run: Callable[[Connection], None]
) -> None:
    """Run `run` (the migrations) under the migration lock, with bounded retries.

    On SQLite, whose one process owns the file, there is no lock and one attempt. On a
    server: on a connection of its own to the server itself as the owner
    (`DATABASE_OWNER_URL`, else `DATABASE_DIRECT_URL`, past any pooler), with no statement
    timeout: a migration takes as long as it takes; it ends by granting the service's
    role its rows (`roles.grant_service`), in the same transaction. A
    statement that waits for a table lock longer than `DB_MIGRATION_LOCK_TIMEOUT_MS`
    fails instead of holding up every query on that table behind it; the run is rolled
    back, the lock released, and the run tried again after a pause as long as that
    timeout (doubled each time), `DB_MIGRATION_ATTEMPTS` times in all.
    """
    url = settings.migration_url
    engine = create_async_engine(url, poolclass=NullPool, connect_args=one_off_connect_args(url))
    attempts, waited = _migration_limits(settings)
    try:
        for attempt in range(1, attempts + 1):
            try:
                conn = await engine.connect()
            except (DBAPIError, OSError) as error:
                raise MigrationStopped(cannot_connect(error, url)) from error
            try:
                async with migration_lock(conn, name, waited):
                    await conn.run_sync(run)
                    await grant_service(conn, settings)
                    await conn.commit()
                return
            except DBAPIError as error:
                if not lock_timed_out(error):
                    raise
                if attempt == attempts:
                    raise MigrationStopped(
                        f"gave up after {attempts} attempts: each time a statement waited "
                        f"longer than DB_MIGRATION_LOCK_TIMEOUT_MS ({waited} ms) for a table "
                        "lock another transaction holds (look for long transactions in "
                        "the server's activity), and DB_MIGRATION_ATTEMPTS ran out"
                    ) from error
                pause = waited / 1000 * 2 ** (attempt - 1)
                log.warning(
                    "migration: a statement waited longer than %d ms for a table lock "
                    "another transaction holds (attempt %d of %d); rolled back, retrying "
                    "in %.1fs",
                    waited,
                    attempt,
                    attempts,
                    pause,
                )
            finally:
                await conn.close()
            await asyncio.sleep(pause)
    finally:
        await engine.dispose()


def _migration_limits(settings: Settings) -> tuple[int, int]:
    """DB_MIGRATION_ATTEMPTS and DB_MIGRATION_LOCK_TIMEOUT_MS. A service on SQLite has
    neither setting: one process owns the file, so one attempt and no lock timeout."""
    attempts = getattr(settings, "db_migration_attempts", 1)
    lock_timeout_ms = getattr(settings, "db_migration_lock_timeout_ms", 0)
    return int(attempts), int(lock_timeout_ms)


async def upgrade_on_startup(settings: Settings, config: Config) -> None:
    """Upgrade under a lock the database holds: the first replica migrates, the others wait
    for it and then find nothing to do (`migrate_under_lock`)."""
    name = str(config.get_main_option("script_location"))
    try:
        await migrate_under_lock(settings, name, lambda conn: upgrade(conn, config))
    except Exception as error:
        log.error("start-up migration failed: %s: %s", type(error).__name__, error)
        raise
    log.info("database schema is at %s", schema_head(config))
