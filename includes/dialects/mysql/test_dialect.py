"""What the MariaDB/MySQL module promises: UTC sessions, timeouts, READ COMMITTED."""

from sqlalchemy import text

from {{ package_name }}.core.config import Settings
from {{ package_name }}.db.engine import DatabaseManager


async def test_every_connection_runs_in_utc_with_its_timeouts(settings: Settings) -> None:
    db = DatabaseManager(settings.model_copy(update={"db_statement_timeout_ms": 2500}))
    await db.connect()
    try:
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("SELECT @@session.time_zone")) == "+00:00"
            version = str(await conn.scalar(text("SELECT VERSION()")))
            if "mariadb" in version.lower():
                limit = await conn.scalar(text("SELECT @@session.max_statement_time"))
                assert float(limit) == 2.5
                isolation = await conn.scalar(text("SELECT @@session.tx_isolation"))
            else:
                assert await conn.scalar(text("SELECT @@session.max_execution_time")) == 2500
                isolation = await conn.scalar(text("SELECT @@session.transaction_isolation"))
            assert isolation == "READ-COMMITTED"
    finally:
        await db.disconnect()
