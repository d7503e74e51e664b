"""Migrations as the kit runs them: the line of history each run records, and start-up
migrations (MIGRATE_ON_STARTUP) that run once however many replicas start, under a lock,
through the direct URL, with bounded lock waits, retried and reported.

The revisions are the render's (a skeleton's: none) with revisions of the tests' own on
top, in a copy (`_with_revisions`)."""

import asyncio
import logging
import re
import shutil
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from httpx import ASGITransport, AsyncClient
from service.kit.db.dialect import migration_lock, one_off_connect_args
from service.kit.db.dialects import mysql
from service.kit.migrations.lineage import LINEAGE
from service.kit.migrations.startup import (
    MigrationStopped,
    alembic_config,
    current_revision,
    upgrade,
    upgrade_on_startup,
)
from service.settings import Settings, get_settings
from sqlalchemy import Connection, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from .conftest import ALEMBIC_INI, service_app
from .databases import BACKEND, UNREACHABLE_URL, scratch_database

# A statement that takes a second, on each server.
SLEEP_ONE_SECOND = {"postgresql": "SELECT pg_sleep(1)", "mysql": "SELECT SLEEP(1)"}.get(
    BACKEND.name, ""
)


def config() -> Any:
    cfg = alembic_config(ALEMBIC_INI)
    cfg.attributes["configure_logger"] = False
    return cfg


def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


@pytest.fixture
async def empty_engine() -> AsyncIterator[AsyncEngine]:
    async with scratch_database("migrations") as url:
        engine = create_async_engine(url, connect_args=one_off_connect_args(url))
        yield engine
        await engine.dispose()


def _step(connection: Connection, action: str, revision: str, cfg: Any = None) -> None:
    cfg = cfg or config()
    cfg.attributes["connection"] = connection
    getattr(command, action)(cfg, revision)


def _with_revisions(tmp_path: Path, *revisions: tuple[str, str]) -> Any:
    """This service's migrations plus revisions of ours, (name, SQL), one on top of the
    other, in a copy beside a copy of alembic.ini (`cfg.config_file_name`). A name
    ending in `_autocommit` runs its SQL outside a transaction."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ALEMBIC_INI, tmp_path / "alembic.ini")
    scripts_dir = tmp_path / "migrations"
    shutil.copytree(ALEMBIC_INI.parent / "migrations", scripts_dir)
    down = scripts().get_current_head()
    for name, sql in revisions:
        body = f'op.execute("{sql}")'
        if name.endswith("_autocommit"):
            body = f"with op.get_context().autocommit_block():\n        {body}"
        (scripts_dir / "versions" / f"{name}.py").write_text(
            f'"""{name}"""\n\nfrom alembic import op\n\nrevision = "{name}"\n'
            f"down_revision = {down!r}\n"
            "branch_labels = None\ndepends_on = None\n\n\n"
            f"def upgrade() -> None:\n    {body}\n\n\n"
            "def downgrade() -> None:\n    pass\n"
        )
        down = name
    cfg = alembic_config(tmp_path / "alembic.ini")  # its scripts: the copy beside it
    cfg.attributes["configure_logger"] = False
    return cfg


# A revision that creates a table: what the tests of start-up migrations migrate to.
CREATING = ("creating", "CREATE TABLE created_by_a_migration (id INT)")


def _lineage(connection: Connection) -> set[str]:
    return set(connection.scalars(select(LINEAGE.c.revision)))


async def test_every_migration_run_records_the_line_of_history_it_leaves(
    empty_engine: AsyncEngine, tmp_path: Path
) -> None:
    """The database holds its revision and every ancestor of it, after an upgrade and
    after a downgrade: a release that does not know the revision still finds its own
    head there (readiness: "ahead", not "branch")."""
    ours = {r.revision for r in scripts().walk_revisions()}
    cfg = _with_revisions(tmp_path, ("first", "SELECT 1"), ("second", "SELECT 1"))
    async with empty_engine.connect() as conn:
        await conn.run_sync(upgrade, cfg)
        assert await conn.run_sync(_lineage) == ours | {"first", "second"}
        await conn.run_sync(_step, "downgrade", "-1", cfg)
        assert await conn.run_sync(_lineage) == ours | {"first"}
        await conn.run_sync(_step, "downgrade", "base", cfg)
        assert await conn.run_sync(_lineage) == set()
        await conn.run_sync(_step, "upgrade", "first", cfg)
        assert await conn.run_sync(_lineage) == ours | {"first"}


@pytest.mark.servers
async def test_replicas_starting_together_migrate_once_however_long_it_takes(
    empty_engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    """Four replicas, a migration that outlasts the statement timeout: one migrates, the
    others wait for its lock without being cancelled, then find nothing to do."""
    url = empty_engine.url
    if BACKEND.name == "postgresql":
        # Connections to this database start with a short statement timeout, as they do
        # behind PgBouncer (the role's settings): the migration's connection lifts it.
        async with empty_engine.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{url.database}" SET statement_timeout = 300'))
            await conn.commit()
    mine = settings.model_copy(update={"database_url": url, "db_statement_timeout_ms": 300})
    cfg = _with_revisions(tmp_path, ("slow", SLEEP_ONE_SECOND))
    await asyncio.gather(*(upgrade_on_startup(mine, cfg) for _ in range(4)))
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "slow"
        rows = await conn.scalar(text("SELECT count(*) FROM alembic_version"))
    assert rows == 1


@pytest.mark.servers
async def test_replicas_of_the_app_starting_together_migrate_and_are_ready(
    empty_engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    """MIGRATE_ON_STARTUP through the app's own start-up (its lifespan): three replicas
    start at once on an empty database, and each is ready at the schema's head."""
    release = Path(str(_with_revisions(tmp_path, CREATING).config_file_name))
    mine = settings.model_copy(
        update={
            "database_url": empty_engine.url,
            "migrate_on_startup": True,
            "alembic_config": release,
        }
    )

    async def start() -> Any:
        app = service_app(mine)
        transport = ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            return (await client.get("/health/ready")).json()

    answers = await asyncio.gather(*(start() for _ in range(3)))
    assert all(a["status"] == "ok" and a["checks"]["schema"] == "ok" for a in answers), answers
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "creating"


@pytest.mark.servers
async def test_start_up_migrations_and_their_lock_use_the_direct_url(
    empty_engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    """With DATABASE_URL leading nowhere (a pooler, here unreachable) and
    DATABASE_DIRECT_URL at the server, the lock and the migration reach the server."""
    url = empty_engine.url
    direct = settings.model_copy(update={"database_url": url}).migration_url
    nowhere = UNREACHABLE_URL.set(database=url.database)
    mine = settings.model_copy(update={"database_url": nowhere, "database_direct_url": direct})
    await asyncio.wait_for(upgrade_on_startup(mine, _with_revisions(tmp_path, CREATING)), 60)
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "creating"


@pytest.mark.servers
async def test_alembics_command_line_uses_the_direct_url(
    empty_engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`alembic upgrade head` (migrations/env.py) connects to DATABASE_DIRECT_URL."""
    url = empty_engine.url
    direct = settings.model_copy(update={"database_url": url}).migration_url
    nowhere = UNREACHABLE_URL.set(database=url.database)
    monkeypatch.setenv("DATABASE_URL", nowhere.render_as_string())
    monkeypatch.setenv("DATABASE_DIRECT_URL", direct.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        # In a thread, as the command line runs it: env.py starts an event loop of its own.
        await asyncio.to_thread(command.upgrade, _with_revisions(tmp_path, CREATING), "head")
    finally:
        get_settings.cache_clear()
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "creating"


@pytest.mark.servers
async def test_a_failing_start_up_migration_reports_its_own_error_and_unlocks(
    empty_engine: AsyncEngine,
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = settings.model_copy(update={"database_url": empty_engine.url})
    broken = _with_revisions(tmp_path / "broken", ("broken", "SELECT no_such_function()"))
    with pytest.raises(DBAPIError, match="no_such_function"):
        await upgrade_on_startup(mine, broken)
    assert "start-up migration failed" in caplog.text
    assert "no_such_function" in caplog.text
    # The lock was released: the next start-up migrates at once.
    fixed = _with_revisions(tmp_path / "fixed", CREATING)
    await asyncio.wait_for(upgrade_on_startup(mine, fixed), timeout=30)
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "creating"


@pytest.mark.servers
async def test_a_start_up_migration_waits_for_a_table_lock_no_longer_than_its_timeout(
    empty_engine: AsyncEngine,
    settings: Settings,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Its statements have no time limit, but one that waits for a table lock gives up
    after DB_MIGRATION_LOCK_TIMEOUT_MS: queued behind a long transaction, it would hold
    up every query on that table behind it. It tries DB_MIGRATION_ATTEMPTS times."""
    mine = settings.model_copy(
        update={
            "database_url": empty_engine.url,
            "db_migration_lock_timeout_ms": 500,
            "db_migration_attempts": 2,
        }
    )
    altering = _with_revisions(tmp_path, ("altering", "ALTER TABLE held ADD COLUMN extra INT"))
    async with empty_engine.connect() as holder:
        await holder.execute(text("CREATE TABLE held (id INT PRIMARY KEY)"))
        await holder.commit()
        await holder.execute(text("SELECT * FROM held"))  # its transaction stays open
        with pytest.raises(MigrationStopped, match="gave up after 2 attempts") as stopped:
            await asyncio.wait_for(upgrade_on_startup(mine, altering), timeout=60)
        await holder.rollback()
    assert isinstance(stopped.value.__cause__, DBAPIError)
    assert "attempt 1 of 2" in caplog.text
    assert "start-up migration failed" in caplog.text


def _alembic_upgrade(cfg: Any) -> str | None:
    """`alembic upgrade head` as the command line runs it (env.py with its own engine, in
    a thread of its own); what it exits with, None when it succeeds."""
    try:
        command.upgrade(cfg, "head")
    except SystemExit as stopped:
        return str(stopped)
    return None


@pytest.fixture
async def held_table(
    empty_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AsyncConnection]:
    """A table `held` that a transaction of another client is reading (so it holds a lock
    every ALTER TABLE waits for), and `alembic` pointed at its database with a short lock
    timeout."""
    url = empty_engine.url
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    monkeypatch.setenv("DB_MIGRATION_LOCK_TIMEOUT_MS", "300")
    get_settings.cache_clear()
    async with empty_engine.connect() as holder:
        await holder.execute(text("CREATE TABLE held (id INT PRIMARY KEY)"))
        await holder.commit()
        await holder.execute(text("SELECT * FROM held"))  # its transaction stays open
        yield holder
        await holder.rollback()
    get_settings.cache_clear()


@pytest.mark.servers
async def test_alembic_upgrade_retries_a_held_table_lock_and_lands_once_it_is_free(
    empty_engine: AsyncEngine,
    held_table: AsyncConnection,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`alembic upgrade head` (the Job, compose, CI) gives up on a table lock after
    DB_MIGRATION_LOCK_TIMEOUT_MS, so queries on that table do not queue behind it, says so,
    and tries again: the first try after the reader is done lands."""
    retrying = threading.Event()

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying" in record.getMessage():
                retrying.set()

    watch = Watch()
    logging.getLogger().addHandler(watch)
    caplog.set_level(logging.INFO)
    altering = _with_revisions(tmp_path, ("altering", "ALTER TABLE held ADD COLUMN extra INT"))
    try:
        running = asyncio.create_task(asyncio.to_thread(_alembic_upgrade, altering))
        gave_up_once = await asyncio.to_thread(retrying.wait, 60)
        await held_table.rollback()  # the reader is done
        stopped = await asyncio.wait_for(running, timeout=60)
    finally:
        logging.getLogger().removeHandler(watch)
    assert gave_up_once, "no retry after the lock timeout"
    assert stopped is None, stopped
    assert re.search(r"waited longer than 300 ms for a table lock .*attempt 1 of \d+", caplog.text)
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "altering"


@pytest.mark.servers
async def test_alembic_upgrade_gives_up_after_its_attempts_with_one_line(
    empty_engine: AsyncEngine,
    held_table: AsyncConnection,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DB_MIGRATION_ATTEMPTS", "2")
    get_settings.cache_clear()
    altering = _with_revisions(tmp_path, ("altering", "ALTER TABLE held ADD COLUMN extra INT"))
    stopped = await asyncio.wait_for(asyncio.to_thread(_alembic_upgrade, altering), timeout=60)
    assert stopped is not None, "it migrated past a held lock"
    assert len(stopped.splitlines()) == 1, stopped
    assert stopped.startswith("alembic: gave up after 2 attempts"), stopped
    assert "DB_MIGRATION_LOCK_TIMEOUT_MS" in stopped
    await held_table.rollback()
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) != "altering"


@pytest.mark.postgresql
async def test_replicas_waiting_for_the_migration_lock_hold_no_snapshot(
    empty_engine: AsyncEngine, settings: Settings, tmp_path: Path
) -> None:
    """CREATE INDEX CONCURRENTLY waits for every transaction that holds a snapshot older
    than its own. A replica waiting for the migration lock inside a statement holds one
    for as long as it waits: the index would wait for the replica, the replica for the
    migration's lock. Two replicas start together; the second waits while the first
    builds an index concurrently."""
    mine = settings.model_copy(update={"database_url": empty_engine.url})
    cfg = _with_revisions(
        tmp_path,
        ("indexed", "CREATE TABLE indexed (id INT)"),
        ("slow", SLEEP_ONE_SECOND),  # the other replica is waiting by now
        ("index_autocommit", "CREATE INDEX CONCURRENTLY ix_indexed_id ON indexed (id)"),
    )
    await asyncio.wait_for(
        asyncio.gather(*(upgrade_on_startup(mine, cfg) for _ in range(2))), timeout=60
    )
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "index_autocommit"
        valid = await conn.scalar(
            text("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ix_indexed_id'::regclass")
        )
    assert valid is True


@pytest.mark.mysql
async def test_a_migration_lock_not_granted_stops_start_up_unmigrated(
    empty_engine: AsyncEngine, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """GET_LOCK answers 0 when its wait runs out: migrating anyway could run one
    migration twice at once, so start-up stops instead."""
    monkeypatch.setattr(mysql, "MIGRATION_LOCK_WAIT_SECONDS", 1)
    mine = settings.model_copy(update={"database_url": empty_engine.url})
    cfg = _with_revisions(tmp_path, CREATING)
    name = str(cfg.get_main_option("script_location"))
    async with empty_engine.connect() as other, migration_lock(other, name, 0):
        with pytest.raises(RuntimeError, match=r"could not take the migration lock .*gave 0"):
            await upgrade_on_startup(mine, cfg)
    async with empty_engine.connect() as conn:
        assert await conn.run_sync(current_revision) is None
