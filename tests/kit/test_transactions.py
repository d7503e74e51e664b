"""Units of work on the real database: races that make one row, optimistic versions,
deadlocks and stale snapshots run again, violated constraints as domain errors, all
or nothing, and savepoints."""

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from prometheus_client import REGISTRY
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.errors import Conflict, InvalidData, NotFound, StaleVersion
from sqlalchemy import func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from .factories import child_data, make_parent, parent_data
from .resource import ANY, Child, Parent, ParentCreate, Shape, create_parent, get_or_create_parent

# Keys tests give the rows they insert themselves (integer shapes).
_chosen = iter(range(1, 1_000_000))


@unit_of_work
async def insert_child(session: WriteSession, shape: Shape, row: dict[str, Any]) -> Child:
    return await shape.children(session).create(**row)


@unit_of_work
async def create_with_children(
    session: WriteSession, shape: Shape, parent: dict[str, Any], titles: Sequence[str]
) -> Parent:
    """One unit of work across two repositories: all rows are stored, or none."""
    created = await shape.parents(session).create(**parent)
    await shape.children(session).create_many(
        [{"parent_id": created.id, "title": title} for title in titles]
    )
    return created


@unit_of_work
async def add_children_best_effort(
    session: WriteSession, shape: Shape, parent: Parent, titles: Sequence[str]
) -> tuple[list[Child], list[str]]:
    """Each child in its own savepoint: a duplicate title skips that child, not the batch."""
    repo = shape.children(session)
    created: list[Child] = []
    skipped: list[str] = []
    for title in titles:
        try:
            async with session.begin_nested():
                created.append(await repo.create(parent_id=parent.id, title=title))
        except IntegrityError:
            skipped.append(title)
    return created, skipped


async def two_parents(sessions: async_sessionmaker[WriteSession]) -> tuple[Parent, Parent]:
    @unit_of_work
    async def make(session: WriteSession) -> tuple[Parent, Parent]:
        return await make_parent(session, ANY), await make_parent(session, ANY)

    async with sessions() as session:
        return await make(session)


async def test_twenty_concurrent_get_or_create_make_one_row(
    committing_sessions: async_sessionmaker[WriteSession], shape: Shape
) -> None:
    async def one() -> tuple[Parent, bool]:
        async with committing_sessions() as session:
            return await get_or_create_parent(session, shape, "raced", "Raced")

    results = await asyncio.gather(*(one() for _ in range(20)))
    assert sum(created for _, created in results) == 1
    assert len({parent.id for parent, _ in results}) == 1
    async with committing_sessions() as session:
        count = await session.scalar(select(func.count()).where(shape.parent.slug == "raced"))
    assert count == 1


async def test_get_or_create_answers_a_conflict_on_another_unique_key(
    committing_sessions: async_sessionmaker[WriteSession], shape: Shape
) -> None:
    """Keyed by id, the row's slug is taken: that is a conflict to report, not the row.
    (An insert with a key of its own moves MariaDB's and SQLite's counters past it, even
    one that fails: the key is far below `missing_key()`'s.)"""
    chosen = shape.missing_key() if shape.uuid_keys else 2**61 + next(_chosen)

    @unit_of_work
    async def by_id(session: WriteSession, slug: str) -> tuple[Parent, bool]:
        defaults = {"name": "Other", "slug": slug}
        return await shape.parents(session).get_or_create(defaults, id=chosen)

    async with committing_sessions() as session:
        await create_parent(session, shape, ParentCreate(**parent_data(slug="held")))
        with pytest.raises(Conflict, match="a parent with this slug already exists"):
            await by_id(session, "held")
        parent, created = await by_id(session, "free")
    assert created and parent.slug == "free" and parent.id == chosen


async def test_concurrent_updates_of_one_version_one_wins(
    committing_sessions: async_sessionmaker[WriteSession],
) -> None:
    async with committing_sessions() as session:
        parent = await create_parent(session, ANY, ParentCreate(**parent_data()))

    async def rename(name: str) -> str:
        async with committing_sessions() as session:
            try:
                await ANY.parent_service.update(session, parent.id, 1, {"name": name})
            except StaleVersion:
                return "conflict"
            return "ok"

    outcomes = await asyncio.gather(rename("first"), rename("second"))
    assert sorted(outcomes) == ["conflict", "ok"]
    async with committing_sessions() as session:
        stored = await session.get(ANY.parent, parent.id)
    assert stored is not None and stored.version == 2


@pytest.mark.servers
async def test_a_deadlock_is_retried_until_both_units_of_work_succeed(
    committing_sessions: async_sessionmaker[WriteSession],
) -> None:
    a, b = await two_parents(committing_sessions)
    calls = {"ab": 0, "ba": 0}
    both_hold_first_lock = asyncio.Barrier(2)
    model = ANY.parent

    async def unit(first: Parent, second: Parent, key: str) -> None:
        @unit_of_work
        async def locked(session: WriteSession) -> None:
            calls[key] += 1
            await session.execute(select(model).where(model.id == first.id).with_for_update())
            if calls[key] == 1:
                await both_hold_first_lock.wait()
            await session.execute(select(model).where(model.id == second.id).with_for_update())

        async with committing_sessions() as session:
            await locked(session)

    await asyncio.wait_for(asyncio.gather(unit(a, b, "ab"), unit(b, a, "ba")), timeout=30)
    assert calls["ab"] + calls["ba"] == 3  # exactly one side lost the deadlock and re-ran


def retries() -> float:
    labels = {"kind": "deadlock_or_serialization", "session": "write"}
    return REGISTRY.get_sample_value("db_retries_total", labels) or 0.0


async def until_a_lock_wait(rival: AsyncConnection, table: str) -> None:
    """Return once another transaction in this database waits for a lock (no timing)."""
    waiting = {
        "postgresql": "SELECT count(*) FROM pg_stat_activity WHERE datname = "
        "current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        # Without the PROCESS privilege a user sees its own connections only, and
        # not their lock waits: the INSERT of the contended title still running is one.
        "mysql": "SELECT count(*) FROM information_schema.PROCESSLIST WHERE DB = DATABASE() "
        f"AND ID <> CONNECTION_ID() AND INFO LIKE 'INSERT INTO {table}%contended%'",
    }[rival.dialect.name]
    async with rival.engine.connect() as watcher:
        while not (await watcher.execute(text(waiting))).scalar():
            await watcher.rollback()  # a fresh snapshot each time (MariaDB)
            await asyncio.sleep(0.01)


async def test_a_retried_unit_of_work_reloads_the_entities_it_was_given(
    committing_sessions: async_sessionmaker[WriteSession], engine: AsyncEngine
) -> None:
    """The first attempt fails as the database decides (a deadlock, or on SQLite a
    snapshot another writer made stale); the rollback expires every object of the
    session, and the retry still reads the parent it was given."""
    shape = ANY
    async with committing_sessions() as session:
        parent = await create_parent(session, shape, ParentCreate(**parent_data()))
        before = retries()
        titles = ["first", "contended"]
        async with engine.connect() as rival:
            if engine.dialect.name == "sqlite":
                await shape.parent_service.get(session, parent.id)  # the session's snapshot
                await rival.execute(insert(shape.parent).values(**parent_data()))
                await rival.commit()  # ... is stale: SQLite refuses the next write
                created, skipped = await add_children_best_effort(session, shape, parent, titles)
            else:
                # The rival holds "contended" (and, on MariaDB, more: InnoDB rolls back
                # the lighter transaction); the unit of work inserts "first", then waits
                # for "contended"; the rival then wants the parent "first" locks.
                heavy = [{"parent_id": parent.id, "title": f"rival {i}"} for i in range(20)]
                contended = {"parent_id": parent.id, "title": "contended"}
                await rival.execute(insert(shape.child), [*heavy, contended])
                unit = asyncio.ensure_future(
                    add_children_best_effort(session, shape, parent, titles)
                )
                await until_a_lock_wait(rival, shape.child.__tablename__)
                lock = select(shape.parent.id).where(shape.parent.id == parent.id)
                await rival.execute(
                    lock.with_for_update()
                )  # the deadlock: the unit of work is its victim
                await rival.rollback()
                created, skipped = await asyncio.wait_for(unit, timeout=30)
    assert retries() == before + 1
    assert [c.title for c in created] == ["first", "contended"] and skipped == []
    assert all(c.parent_id == parent.id for c in created)


async def test_each_constraint_becomes_a_domain_error(
    committing_sessions: async_sessionmaker[WriteSession], engine: AsyncEngine, shape: Shape
) -> None:
    """The message a constraint declares, whichever shape of model and backend; a broken
    foreign key on SQLite, which names no constraint, gets the default one."""
    missing = shape.missing_key()
    sqlite = engine.dialect.name == "sqlite"
    async with committing_sessions() as session:
        parent = await create_parent(session, shape, ParentCreate(**parent_data(slug="taken")))
        parent_id = parent.id  # a failed unit of work expires the objects of its session
        with pytest.raises(Conflict, match="a parent with this slug already exists"):
            await create_parent(session, shape, ParentCreate(**parent_data(slug="taken")))
        await insert_child(session, shape, {"parent_id": parent_id, "title": "same"})
        with pytest.raises(Conflict, match="this parent already has a child with this title"):
            await insert_child(session, shape, {"parent_id": parent_id, "title": "same"})
        with pytest.raises(NotFound, match="parent"):
            await shape.parent_service.get(session, missing)
        refused_key = (
            "a referenced record does not exist" if sqlite else "the parent does not exist"
        )
        violations: list[tuple[dict[str, Any], type[Exception], str]] = [
            ({"priority": 9}, InvalidData, "priority must be between 0 and 5"),
            ({"status": "x"}, InvalidData, "status must be one of todo, doing, done"),
            ({"parent_id": missing}, Conflict, refused_key),
        ]
        for values, error, message in violations:
            row = {"parent_id": parent_id, **child_data(title="rule"), **values}
            with pytest.raises(error, match=message):
                await insert_child(session, shape, row)


async def test_a_unit_of_work_is_all_or_nothing(
    committing_sessions: async_sessionmaker[WriteSession],
) -> None:
    data = parent_data(slug="atomic")
    async with committing_sessions() as session:
        with pytest.raises(Conflict):
            await create_with_children(session, ANY, data, ["dup", "dup"])
        assert await ANY.parents(session).get_by(slug="atomic") is None
        parent = await create_with_children(session, ANY, data, ["one", "two"])
    async with committing_sessions() as session:
        count = await session.scalar(select(func.count()).where(ANY.child.parent_id == parent.id))
    assert count == 2


async def test_savepoints_skip_only_the_failing_part(session: WriteSession) -> None:
    parent = await make_parent(session, ANY)
    titles = ["a", "b", "a", "c", "b"]
    created, skipped = await add_children_best_effort(session, ANY, parent, titles)
    assert [c.title for c in created] == ["a", "b", "c"]
    assert skipped == ["a", "b"]
