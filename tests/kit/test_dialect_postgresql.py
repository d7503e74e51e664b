"""What the PostgreSQL module promises: settings on every connection, errors by kind."""

import pytest
from service.kit.db.dialect import engine_options
from service.kit.db.engine import DatabaseManager
from service.kit.migrations.startup import migrate_under_lock
from service.kit.settings import Settings
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from .databases import scratch_database

pytestmark = pytest.mark.postgresql


async def test_server_settings_reach_every_connection(settings: Settings) -> None:
    """Both timeouts and the name, on the read and the write pool, directly or through
    PgBouncer (where the timeouts are the database's settings, which migrations set)."""
    timeouts = {"db_statement_timeout_ms": 1234, "db_idle_in_transaction_timeout_ms": 4321}
    async with scratch_database("settings") as url:
        mine = settings.model_copy(update={"database_url": url, **timeouts})
        await migrate_under_lock(mine, "settings", lambda _: None)  # as `alembic upgrade head`
        db = DatabaseManager(mine)
        await db.connect()
        try:
            for engine in (db.engine, db.read_engine):
                async with engine.connect() as conn:
                    timeout = await conn.scalar(text("SHOW statement_timeout"))
                    idle = await conn.scalar(text("SHOW idle_in_transaction_session_timeout"))
                    name = await conn.scalar(text("SELECT current_setting('application_name')"))
                assert (timeout, idle) == ("1234ms", "4321ms")
                assert name == settings.db_application_name
        finally:
            await db.disconnect()


def test_timeouts_of_zero_are_left_to_the_server(settings: Settings) -> None:
    quiet = settings.model_copy(
        update={"db_statement_timeout_ms": 0, "db_idle_in_transaction_timeout_ms": 0}
    )
    server_settings = engine_options(quiet)["connect_args"]["server_settings"]
    assert set(server_settings) == {"application_name"}


async def test_a_statement_longer_than_the_timeout_is_cancelled(settings: Settings) -> None:
    """On every connection the service opens, directly or through PgBouncer (where the
    timeout is the database's setting, which migrations set, not a start-up parameter)."""
    async with scratch_database("timeout") as url:
        mine = settings.model_copy(update={"database_url": url, "db_statement_timeout_ms": 200})
        await migrate_under_lock(mine, "timeout", lambda _: None)  # as `alembic upgrade head`
        db = DatabaseManager(mine)
        await db.connect()
        try:
            for sessions in (db.read_session, db.write_session):
                async with sessions() as session:
                    with pytest.raises(DBAPIError, match="statement timeout"):
                        await session.execute(text("SELECT pg_sleep(2)"))
        finally:
            await db.disconnect()
