"""What the PostgreSQL module promises: settings on every connection, errors by kind."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from {{ package_name }}.core.config import Settings
from {{ package_name }}.db.dialect import engine_options
from {{ package_name }}.db.engine import DatabaseManager

from .databases import scratch_database


async def test_server_settings_reach_every_connection(settings: Settings) -> None:
    async with scratch_database("settings") as url:
        db = DatabaseManager(
            settings.model_copy(update={"database_url": url, "db_statement_timeout_ms": 1234})
        )
        await db.connect()
        try:
            async with db.engine.connect() as conn:
                timeout = await conn.scalar(text("SHOW statement_timeout"))
                name = await conn.scalar(text("SELECT current_setting('application_name')"))
            assert timeout == "1234ms"
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
    timeout is the role's setting in this database, not a start-up parameter)."""
    async with scratch_database("timeout") as url:
        db = DatabaseManager(
            settings.model_copy(update={"database_url": url, "db_statement_timeout_ms": 200})
        )
        await db.connect()
        try:
            for sessions in (db.read_session, db.write_session):
                async with sessions() as session:
                    with pytest.raises(DBAPIError, match="statement timeout"):
                        await session.execute(text("SELECT pg_sleep(2)"))
        finally:
            await db.disconnect()
