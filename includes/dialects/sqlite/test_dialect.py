"""What the SQLite module promises: foreign keys enforced, WAL, nested transactions."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from {{ package_name }}.kit.db.dialect import violated_constraint
from {{ package_name }}.kit.db.dialect import violation
from {{ package_name }}.kit.db.engine import DatabaseManager
from {{ package_name }}.kit.settings import Settings


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
