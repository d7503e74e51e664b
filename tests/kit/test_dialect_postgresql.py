"""What the PostgreSQL module promises: settings on every connection, errors by kind."""

import asyncio

import pytest
from service.kit.db.dialect import configure_server, engine_options, one_off_connect_args
from service.kit.db.engine import DatabaseManager
from service.kit.settings import Settings
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from .databases import scratch_database

pytestmark = pytest.mark.postgresql


async def test_server_settings_reach_every_connection(settings: Settings) -> None:
    """Both timeouts and the name, on the read and the write pool, directly or through
    PgBouncer (where the timeouts are the role's settings in this database)."""
    timeouts = {"db_statement_timeout_ms": 1234, "db_idle_in_transaction_timeout_ms": 4321}
    async with scratch_database("settings") as url:
        db = DatabaseManager(settings.model_copy(update={"database_url": url, **timeouts}))
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


async def test_workers_starting_together_set_the_role_settings_in_turn(
    settings: Settings,
) -> None:
    """Behind PgBouncer each worker makes the timeouts the role's settings as it starts;
    six at once must not collide in the catalog (which fails a start-up)."""
    async with scratch_database("roles") as url:
        behind = {"db_behind_pgbouncer": True, "db_statement_timeout_ms": 4321}
        mine = settings.model_copy(update={"database_url": url, **behind})

        async def start() -> None:
            engine = create_async_engine(
                mine.migration_url,
                poolclass=NullPool,
                connect_args=one_off_connect_args(mine.migration_url),
            )
            try:
                async with engine.connect() as conn:
                    await configure_server(conn, mine)
                    await conn.commit()
            finally:
                await engine.dispose()

        await asyncio.gather(*(start() for _ in range(6)))
        engine = create_async_engine(mine.migration_url, poolclass=NullPool)
        try:
            async with engine.connect() as conn:
                assert await conn.scalar(text("SHOW statement_timeout")) == "4321ms"
        finally:
            await engine.dispose()
