"""What the MariaDB/MySQL module promises: UTC sessions, timeouts, READ COMMITTED."""

import shutil
from pathlib import Path

import pytest
from alembic import command
from service.kit.db.base import Base
from service.kit.db.dialect import one_off_connect_args, without_statement_timeout
from service.kit.db.dialects.mysql import is_mariadb, statement_timeout
from service.kit.db.engine import DatabaseManager
from service.kit.migrations.startup import alembic_config
from service.kit.settings import Settings
from sqlalchemy import Connection, String, insert, select, text
from sqlalchemy.ext.asyncio import create_async_engine

from .conftest import ALEMBIC_INI, SERVICE_ROOT
from .databases import scratch_database
from .resource import ANY

pytestmark = pytest.mark.mysql


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


# What `SELECT VERSION()` answers on servers this suite does not reach (no MySQL runs
# here): the decision is tested on their strings, the MariaDB branch also on the server.
MYSQL_VERSIONS = ("8.0.40", "8.0.36-0ubuntu0.22.04.1", "8.4.3", "9.1.0-commercial")
MARIADB_VERSIONS = ("10.11.19-MariaDB-0+deb12u1", "11.4.2-MariaDB-ubu2404", "10.6.18-MariaDB-log")


@pytest.mark.parametrize("version", MYSQL_VERSIONS)
def test_mysql_gets_max_execution_time_in_milliseconds(version: str) -> None:
    assert statement_timeout(version, 2500) == "SET SESSION max_execution_time = 2500"
    assert statement_timeout(version, 0) == "SET SESSION max_execution_time = 0"


@pytest.mark.parametrize("version", MARIADB_VERSIONS)
def test_mariadb_gets_max_statement_time_in_seconds(version: str) -> None:
    assert statement_timeout(version, 2500) == "SET SESSION max_statement_time = 2.5"
    assert statement_timeout(version, 0) == "SET SESSION max_statement_time = 0"


async def test_migrations_lift_the_statement_timeout_in_the_servers_spelling(
    settings: Settings,
) -> None:
    db = DatabaseManager(settings.model_copy(update={"db_statement_timeout_ms": 2500}))
    await db.connect()
    try:
        async with db.engine.connect() as conn:
            version = str(await conn.scalar(text("SELECT VERSION()")))
            variable = "max_statement_time" if is_mariadb(version) else "max_execution_time"
            assert float(await conn.scalar(text(f"SELECT @@session.{variable}"))) > 0
            await without_statement_timeout(conn)
            assert float(await conn.scalar(text(f"SELECT @@session.{variable}"))) == 0
    finally:
        await db.disconnect()


# Outside Latin-1, and four bytes in UTF-8 (emoji, CJK extension B): what `utf8mb3` and
# `latin1` columns refuse.
FOUR_BYTE_TEXT = "Füchse 🦊 👍🏽 𠜎 ∑"


async def test_tables_hold_full_unicode_on_a_latin1_database(tmp_path: Path) -> None:
    """A server or database whose default character set is latin1 still gets tables
    that store any text: each table of the models declares utf8mb4 itself, and the
    migration autogenerate writes for them says so."""
    latin1 = {"character_set": "latin1", "collation": "latin1_swedish_ci"}
    scripts = tmp_path / "migrations"
    shutil.copytree(SERVICE_ROOT / "migrations", scripts)
    config = alembic_config(ALEMBIC_INI)
    config.attributes["configure_logger"] = False
    config.set_main_option("script_location", str(scripts))

    def generate_and_upgrade(connection: Connection) -> None:
        config.attributes["connection"] = connection
        command.revision(config, message="the kit's tables", autogenerate=True)
        command.upgrade(config, "head")

    async with scratch_database("latin1", **latin1) as url:
        engine = create_async_engine(url, connect_args=one_off_connect_args(url))
        try:
            async with engine.begin() as conn:
                default = await conn.scalar(text("SELECT @@character_set_database"))
                assert default == "latin1"
                await conn.run_sync(generate_and_upgrade)
                columns = await conn.execute(
                    text(
                        "SELECT table_name, column_name, character_set_name "
                        "FROM information_schema.columns "
                        "WHERE table_schema = DATABASE() AND character_set_name IS NOT NULL"
                    )
                )
                charsets = {(t, c): cs for t, c, cs in columns.all() if t in Base.metadata.tables}
                textual = {
                    name
                    for name, table in Base.metadata.tables.items()
                    if any(isinstance(column.type, String) for column in table.columns)
                }
                assert {t for t, _ in charsets} == textual
                assert all(cs == "utf8mb4" for cs in charsets.values()), charsets
                parent, child = ANY.parent, ANY.child
                values = {"name": FOUR_BYTE_TEXT, "slug": "fox", "description": FOUR_BYTE_TEXT}
                await conn.execute(insert(parent).values(**values))
                parent_id = await conn.scalar(select(parent.id))
                # Two titles that differ only in their emoji are two titles.
                for title in ("😀", "😁"):
                    await conn.execute(insert(child).values(parent_id=parent_id, title=title))
                stored = await conn.execute(select(parent.name, parent.description))
                assert stored.one() == (FOUR_BYTE_TEXT, FOUR_BYTE_TEXT)
                titles = await conn.scalars(select(child.title).order_by(child.title))
                assert sorted(titles.all()) == ["😀", "😁"]
        finally:
            await engine.dispose()
