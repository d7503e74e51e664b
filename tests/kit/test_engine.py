"""The engines of a process (`DatabaseManager`): pools and their counters, the log of
slow and failing statements, and a start-up that stops, with the reason, when the
database cannot be used as configured."""

import logging
from typing import Any

import pytest
from fastapi import FastAPI
from service.kit.db.engine import DatabaseManager
from service.kit.errors import DatabaseMisconfigured
from service.kit.settings import SettingsError
from service.settings import Settings
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from .databases import BACKEND, UNREACHABLE_URL
from .roles import Roles


async def test_pool_counters_and_status(settings: Settings) -> None:
    db = DatabaseManager(settings)
    await db.connect()
    try:
        before = db.pool_status()["checkouts"]
        async with db.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
            assert db.pool_status()["checked_out"] == 1
        status = db.pool_status()
        assert status["checkouts"] == before + 1
        assert status["checked_out"] == 0
        assert status["size"] == settings.db_pool_size + settings.db_write_pool_size
    finally:
        await db.disconnect()


async def test_slow_queries_are_logged_without_parameters(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    db = DatabaseManager(settings.model_copy(update={"db_slow_query_ms": 50}))
    await db.connect()
    try:
        with caplog.at_level(logging.WARNING):
            async with db.engine.connect() as conn:
                await conn.execute(text(BACKEND.slow_query), {"marker": "secret-value"})
                await conn.execute(text("SELECT 1"))
        slow = [r.getMessage() for r in caplog.records if "slow query" in r.getMessage()]
        # The slow one is logged (a busy machine may log the quick one too), never a value.
        assert [m for m in slow if BACKEND.slow_query.split()[1] in m]
        assert not [m for m in slow if "secret-value" in m]
    finally:
        await db.disconnect()


async def test_a_failing_statement_is_logged_without_its_parameters(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Values are user data: the statement's text reaches the log (echoed, and in the
    error the service logs for a 500), its bound values never do."""
    secret = "-".join(["s3cr3t", "value"])  # noqa: FLY002 (tracebacks quote this file)
    failing = text("SELECT * FROM no_such_table WHERE a = :v")
    db = DatabaseManager(settings.model_copy(update={"db_echo": True}))
    await db.connect()
    try:
        with caplog.at_level(logging.INFO):
            async with db.engine.connect() as conn:
                with pytest.raises(DBAPIError) as failed:
                    await conn.execute(failing, {"v": secret})
            service_log = logging.getLogger("service")
            service_log.error("failed", exc_info=failed.value)  # as the 500 handler logs it
        assert "no_such_table" in caplog.text
        assert secret not in caplog.text and secret not in str(failed.value)
    finally:
        await db.disconnect()


@pytest.mark.servers
async def test_connect_gives_up_after_bounded_retries(settings: Settings) -> None:
    db = DatabaseManager(
        settings.model_copy(
            update={
                "database_url": UNREACHABLE_URL,
                "db_connect_attempts": 3,
                "db_connect_backoff": 0.01,
            }
        )
    )
    with pytest.raises(DatabaseMisconfigured, match=r"cannot reach the database .*3 attempts"):
        await db.connect()
    assert db.counters.connects == 0
    await db.disconnect()


@pytest.mark.servers
async def test_a_budget_over_the_servers_connections_stops_production(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Pools x workers x pods beyond max_connections: a warning in development, and in
    production a refusal to start that names the settings to change."""
    crowded = {"web_concurrency": 200, "db_pods": 50}
    db = DatabaseManager(settings.model_copy(update=crowded))
    await db.connect()  # development: it starts, and says so
    await db.disconnect()
    assert "the server's max_connections" in caplog.text  # the pools', or the direct ones'
    production = settings.model_copy(update={**crowded, "environment": "production"})
    with pytest.raises(SettingsError, match="WEB_CONCURRENCY, DB_PODS"):
        await DatabaseManager(production).connect()


@pytest.mark.servers
async def test_the_budget_counts_the_jobs_worker_pods(
    roles: Roles, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A jobs worker pod holds one process's pools and the queue's connection: the
    budget that fits without them is refused in production with too many of them. As
    production serves: as the service's own role."""
    caplog.set_level(logging.INFO)
    production = roles.settings(settings).model_copy(update={"environment": "production"})
    db = DatabaseManager(production.model_copy(update={"jobs_worker_pods": 2}))
    await db.connect()
    await db.disconnect()
    per_worker = settings.db_pool_size + settings.db_write_pool_size + 1
    per_worker += 2 * settings.db_max_overflow
    assert f"2 jobs worker pods (JOBS_WORKER_PODS) x {per_worker + 1}" in caplog.text
    crowded = production.model_copy(update={"jobs_worker_pods": 1000})
    with pytest.raises(SettingsError, match="JOBS_WORKER_PODS"):
        await DatabaseManager(crowded).connect()


@pytest.mark.postgresql
async def test_behind_pgbouncer_the_budget_is_judged_where_each_connection_goes(
    roles: Roles, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Behind PgBouncer the pools are PgBouncer's clients, not the server's: 3 pods x 2
    workers of pools far over max_connections start, the start-up line says what was
    judged, and only the direct connections (one a worker) count against the server.
    As production serves: as the service's own role."""
    behind = roles.settings(settings).model_copy(
        update={
            "db_behind_pgbouncer": True,
            "environment": "production",
            "web_concurrency": 2,
            "db_pods": 3,
            "db_pool_size": 40,
            "db_write_pool_size": 20,
        }
    )
    caplog.set_level(logging.INFO)
    db = DatabaseManager(behind)
    await db.connect()  # 61 a worker x 6 workers: PgBouncer's clients, not the server's
    await db.disconnect()
    assert "6 direct connections (1 per worker" in caplog.text
    assert "PgBouncer's client limit is not checked" in caplog.text
    bounded = behind.model_copy(update={"db_pgbouncer_max_client_conn": 300})
    with pytest.raises(SettingsError, match="DB_PGBOUNCER_MAX_CLIENT_CONN"):
        await DatabaseManager(bounded).connect()
    crowded = behind.model_copy(update={"web_concurrency": 200, "db_pods": 50})
    with pytest.raises(SettingsError, match=r"direct connections .* exceed the server's"):
        await DatabaseManager(crowded).connect()


# What a deployment can get wrong that no retry mends, per backend, and what it is told.
MISCONFIGURED: dict[str, list[tuple[dict[str, str], str]]] = {
    "postgresql": [
        ({"database": "no_such_database_here"}, "does not exist"),
        ({"username": "no_such_role_here"}, "refused user"),
        ({"host": "no-such-host.invalid"}, "unknown host"),
    ],
    "sqlite": [({"database": "/no/such/directory/service.db"}, "cannot open")],
}
MISCONFIGURED["mysql"] = MISCONFIGURED["postgresql"]


@pytest.mark.parametrize(("change", "says"), MISCONFIGURED[BACKEND.name])
async def test_a_database_that_cannot_be_used_as_configured_is_not_retried(
    settings: Settings, change: dict[str, Any], says: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Retrying cannot create a database, fix a password or a host name: start-up stops
    at once, with one line on what to fix."""
    url = settings.database_url.set(**change)
    db = DatabaseManager(
        settings.model_copy(update={"database_url": url, "db_connect_attempts": 5})
    )
    with pytest.raises(DatabaseMisconfigured, match=says):
        await db.connect()
    assert "not ready" not in caplog.text
    await db.disconnect()


@pytest.mark.postgresql
async def test_reads_run_in_autocommit_unless_behind_pgbouncer(app: FastAPI) -> None:
    """Directly, no BEGIN before a read and no COMMIT after it: the server sees no
    transaction. Behind PgBouncer a read runs in a READ ONLY transaction instead."""
    db: DatabaseManager = app.state.db
    behind = db.settings.db_behind_pgbouncer
    for sessions, in_transaction in ((db.read_session, behind), (db.write_session, True)):
        async with sessions() as session:
            await session.execute(text("SELECT 1"))
            raw = await (await session.connection()).get_raw_connection()
            assert raw.driver_connection is not None
            assert raw.driver_connection.is_in_transaction() is in_transaction


async def test_statement_timing_leaves_the_connection_events_idle(settings: Settings) -> None:
    """Statements are timed at the dialect (`do_execute`), not by connection events: a
    connection event listener makes SQLAlchemy run its event dispatch at every begin,
    execute and rollback of every connection, which on a get cost more than the timing
    itself. Only SQLite listens to a connection event (`begin`, which it needs to open
    its transactions); the statements are timed all the same (tests/kit/test_metrics.py)."""
    db = DatabaseManager(settings)
    await db.connect()
    try:
        for engine in (db.engine, db.read_engine):
            sync = engine.sync_engine
            assert not sync.dispatch.before_cursor_execute
            assert not sync.dispatch.after_cursor_execute
            # Behind PgBouncer the read engine's READ ONLY is an execution option, which
            # SQLAlchemy's dialect applies from a connection event of its own.
            readonly = engine is db.read_engine and settings.db_behind_pgbouncer
            assert sync._has_events is (BACKEND.name == "sqlite" or readonly)
    finally:
        await db.disconnect()
