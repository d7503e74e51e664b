"""Alembic from inside the service: the schema's head, the database's revision, and the
opt-in start-up upgrade that N replicas starting together run exactly once.
"""

import logging
import zlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy import inspect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)


def alembic_config(ini_path: Path) -> Config:
    return Config(str(ini_path))


def schema_head(config: Config) -> str | None:
    """The newest revision in the migration scripts (None when there are none)."""
    return ScriptDirectory.from_config(config).get_current_head()


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at (None before the first migration)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(connection: Connection, config: Config, revision: str = "head") -> None:
    """Run migrations on a connection the caller owns (`env.py` uses it as is)."""
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def _lock_key(config: Config) -> int:
    # A stable 32-bit key per migration directory, so unrelated services never collide.
    return zlib.crc32(str(config.get_main_option("script_location")).encode())


async def upgrade_on_startup(engine: AsyncEngine, config: Config) -> None:
    """Upgrade under a PostgreSQL advisory lock: the first replica migrates, the others wait
    for it and then find nothing to do."""
    key = _lock_key(config)
    async with engine.connect() as conn:
        await conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            await conn.run_sync(upgrade, config)
            await conn.commit()
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
            await conn.commit()
    log.info("database schema is at %s", schema_head(config))
