"""What the PostgreSQL module promises: settings on every connection, errors by kind."""

from sqlalchemy import text

from {{ package_name }}.core.config import Settings
from {{ package_name }}.db.dialect import engine_options
from {{ package_name }}.db.engine import DatabaseManager


async def test_server_settings_reach_every_connection(settings: Settings) -> None:
    db = DatabaseManager(settings.model_copy(update={"db_statement_timeout_ms": 1234}))
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
