"""What the SQLite module promises: foreign keys enforced, WAL, nested transactions, and
keys of deleted rows never given again."""

import pytest
from alembic.migration import MigrationContext
from alembic.operations import Operations
from service.kit.db.base import Base
from service.kit.db.dialect import violated_constraint, violation
from service.kit.db.engine import DatabaseManager
from service.settings import Settings
from sqlalchemy import Column, Connection, Integer, String, Table, delete, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

pytestmark = pytest.mark.sqlite


async def test_every_connection_enforces_foreign_keys_in_wal_mode(settings: Settings) -> None:
    db = DatabaseManager(settings)
    await db.connect()
    try:
        async with db.engine.connect() as conn:
            assert await conn.scalar(text("PRAGMA foreign_keys")) == 1
            assert await conn.scalar(text("PRAGMA journal_mode")) == "wal"
    finally:
        await db.disconnect()


async def test_savepoints_roll_back_only_their_part(settings: Settings) -> None:
    db = DatabaseManager(settings)
    await db.connect()
    try:
        async with db.engine.connect() as conn:
            await conn.execute(text("CREATE TEMP TABLE t (x INTEGER UNIQUE)"))
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            with pytest.raises(IntegrityError) as caught:
                async with conn.begin_nested():
                    await conn.execute(text("INSERT INTO t VALUES (1)"))
            await conn.execute(text("INSERT INTO t VALUES (2)"))
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar() == 2
            await conn.rollback()
    finally:
        await db.disconnect()
    assert violation(caught.value) == "unique"
    assert violated_constraint(caught.value) == "uq_t_x"


async def test_a_table_of_your_own_never_gives_a_deleted_rows_key_again(
    connection: AsyncConnection,
) -> None:
    """Every table of the models' metadata is AUTOINCREMENT (`TABLE_OPTIONS`), yours too:
    without it SQLite gives the next row the largest key + 1, so deleting the newest row
    would hand its key to the next one, and a client holding it would reach that row."""
    table = Table("own_keys", Base.metadata, Column("id", Integer, primary_key=True))
    try:
        await connection.run_sync(table.create)
        first = (await connection.execute(insert(table).returning(table.c.id))).scalar_one()
        newest = (await connection.execute(insert(table).returning(table.c.id))).scalar_one()
        await connection.execute(delete(table).where(table.c.id == newest))
        again = (await connection.execute(insert(table).returning(table.c.id))).scalar_one()
    finally:
        Base.metadata.remove(table)
    assert again not in {first, newest}, (first, newest, again)


async def test_a_table_batch_mode_copies_stays_autoincrement(connection: AsyncConnection) -> None:
    """SQLite's reflection leaves AUTOINCREMENT out; the dialect puts it back, so a later
    migration that copies the table (batch mode) keeps it."""

    def copy(sync: Connection) -> str:
        sync.exec_driver_sql("CREATE TABLE copied (id INTEGER PRIMARY KEY AUTOINCREMENT, x INT)")
        with Operations(MigrationContext.configure(sync)).batch_alter_table("copied") as batch:
            batch.alter_column("x", existing_type=Integer(), type_=String(10))
        read = "SELECT sql FROM sqlite_master WHERE name = 'copied'"
        return str(sync.exec_driver_sql(read).scalar())

    created = await connection.run_sync(copy)
    assert "VARCHAR(10)" in created and "AUTOINCREMENT" in created, created
