"""Repositories: reads, filters and sorts refused before any SQL, writes, deletes soft and
hard, get-or-create, locking reads, and relationships loaded only when asked for; in
every shape of model the kit serves."""

from typing import Any

import pytest
from service.kit.db.session import WriteSession
from service.kit.errors import Conflict, InvalidQuery
from sqlalchemy import select
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.orm import joinedload, selectinload

from .factories import make_child, make_parent, parent_data
from .resource import ANY, Shape


async def test_get_get_by_and_exists(session: WriteSession, shape: Shape) -> None:
    repo = shape.parents(session)
    parent = await make_parent(session, shape, slug="findable")
    assert await repo.get(parent.id) is parent
    assert await repo.get(shape.missing_key()) is None
    assert await repo.get_by(slug="findable") is parent
    assert await repo.exists(slug="findable") is True
    assert await repo.exists(slug="missing") is False


async def test_list_filters_orders_and_counts(session: WriteSession) -> None:
    repo = ANY.parents(session)
    for name in ("b", "a", "c"):
        await make_parent(session, ANY, name=name, description="listed")
    rows = await repo.list(filters={"description": "listed"}, order_by=["-name"])
    assert [p.name for p in rows] == ["c", "b", "a"]
    assert await repo.count({"description": "listed"}) == 3
    rows = await repo.list(filters={"description": "listed"}, order_by=["name"], offset=1, limit=1)
    assert [p.name for p in rows] == ["b"]


BAD_FILTERS = [
    ({"password": "x"}, "cannot filter by 'password'"),
    ({"version": "two"}, "version: 'two' is not a valid int"),
    ({"created_at": "2024-01-01T00:00:00"}, "is not a valid datetime"),
    ({"name": 5}, "name: 5 is not a valid str"),
]


@pytest.mark.parametrize(("filters", "message"), BAD_FILTERS)
async def test_bad_filters_are_refused_before_any_sql(
    session: WriteSession, filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidQuery, match=message):
        await ANY.parents(session).list(filters=filters)


async def test_a_key_of_the_other_kind_is_refused_as_a_filter(
    session: WriteSession, shape: Shape
) -> None:
    wrong, message = (
        ("not-a-uuid", "id: 'not-a-uuid' is not a valid UUID")
        if shape.uuid_keys
        else ("seven", "id: 'seven' is not a valid int")
    )
    with pytest.raises(InvalidQuery, match=message):
        await shape.parents(session).list(filters={"id": wrong})


async def test_sorting_only_by_whitelisted_columns(session: WriteSession) -> None:
    with pytest.raises(InvalidQuery, match="cannot sort by 'slug'"):
        await ANY.parents(session).list(order_by=["slug"])


async def test_create_many_is_one_insert(
    session: WriteSession, shape: Shape, count_statements: Any
) -> None:
    parent = await make_parent(session, shape)
    rows = [{"parent_id": parent.id, "title": f"bulk {i}"} for i in range(50)]
    with count_statements() as counter:
        children = await shape.children(session).create_many(rows)
    assert len(children) == 50 and all(c.version == 1 and c.created_at for c in children)
    if session.get_bind().dialect.name == "sqlite" and not shape.uuid_keys:
        # SQLite cannot tie RETURNING rows to their parameters when it assigns the keys, so
        # SQLAlchemy learns each new rowid from an INSERT of its own.
        assert counter.count == len(rows)
    else:
        assert counter.count == 1


async def test_update_sets_columns_and_bumps_version(session: WriteSession) -> None:
    repo = ANY.parents(session)
    parent = await make_parent(session, ANY)
    updated = await repo.update(parent, {"name": "Renamed"})
    assert updated.name == "Renamed" and updated.version == 2
    with pytest.raises(InvalidQuery, match="cannot update by 'version'"):
        await repo.update(parent, {"version": 10})


async def test_update_many_changes_matching_live_rows(session: WriteSession, shape: Shape) -> None:
    parent = await make_parent(session, shape)
    for _ in range(3):
        await make_child(session, shape, parent, status="todo")
    changed = await shape.children(session).update_many(
        {"parent_id": parent.id}, {"status": "done"}
    )
    assert changed == 3
    child = shape.child
    rows = await session.execute(
        select(child.status, child.version).where(child.parent_id == parent.id)
    )
    assert {tuple(row) for row in rows} == {("done", 2)}


async def test_soft_delete_hides_and_restore_shows(
    session: WriteSession, soft_shape: Shape
) -> None:
    repo = soft_shape.parents(session)
    parent = await make_parent(session, soft_shape)
    await repo.delete(parent)
    assert parent.is_deleted
    assert await repo.get(parent.id) is None
    assert await repo.get_including_deleted(parent.id) is parent
    assert await repo.count({"id": parent.id}) == 0
    await repo.restore(parent)
    assert await repo.get(parent.id) is parent and not parent.is_deleted


async def test_rows_under_a_deleted_parent_are_hidden_until_it_is_restored(
    session: WriteSession, soft_shape: Shape
) -> None:
    parents, children = soft_shape.parents(session), soft_shape.children(session)
    parent = await make_parent(session, soft_shape)
    child = await make_child(session, soft_shape, parent)
    await parents.delete(parent)
    assert await children.get(child.id) is None
    assert await children.get(child.id, for_update=True) is None
    assert await children.get_including_deleted(child.id) is None
    assert await children.get_by(title=child.title) is None
    assert not await children.exists(id=child.id)
    assert await children.count({"parent_id": parent.id}) == 0
    assert await children.list(filters={"parent_id": parent.id}) == []
    assert await children.update_many({"parent_id": parent.id}, {"status": "done"}) == 0
    await parents.restore(parent)
    assert await children.get(child.id) is child and child.status == "todo"
    assert await children.count({"parent_id": parent.id}) == 1


async def test_get_or_create_never_hands_out_a_hidden_row(
    session: WriteSession, soft_shape: Shape
) -> None:
    parents, children = soft_shape.parents(session), soft_shape.children(session)
    data = parent_data()
    parent, _ = await parents.get_or_create({"name": data["name"]}, slug=data["slug"])
    child, _ = await children.get_or_create({}, parent_id=parent.id, title="only")
    await parents.delete(parent)
    with pytest.raises(Conflict, match="a deleted record"):
        await parents.get_or_create({"name": "again"}, slug=data["slug"])
    with pytest.raises(Conflict, match="a deleted record"):  # its parent is deleted
        await children.get_or_create({}, parent_id=parent.id, title="only")
    await parents.restore(parent)
    assert await parents.get_or_create({"name": "x"}, slug=data["slug"]) == (parent, False)
    assert await children.get_or_create({}, parent_id=parent.id, title="only") == (child, False)


async def test_hard_delete_cascades_to_children(session: WriteSession, shape: Shape) -> None:
    """A hard delete removes the row, and the database its children; soft-deleting
    repositories remove for good when told to."""
    parent = await make_parent(session, shape)
    child = await make_child(session, shape, parent)
    options = {"hard": True} if shape.soft else {}
    await shape.parents(session).delete(parent, **options)
    session.expunge(child)
    assert await session.get(shape.child, child.id) is None
    assert await session.get(shape.parent, parent.id) is None


@pytest.mark.servers
async def test_locking_read_uses_for_update(session: WriteSession, count_statements: Any) -> None:
    parent = await make_parent(session, ANY)
    with count_statements() as counter:
        assert await ANY.parents(session).get(parent.id, for_update=True) is parent
    assert counter.statements[-1].rstrip().endswith("FOR UPDATE")


async def test_relationships_must_be_loaded_explicitly(session: WriteSession) -> None:
    parent = await make_parent(session, ANY)
    child = await make_child(session, ANY, parent)
    session.expunge_all()
    repo = ANY.parents(session)
    bare = await repo.get(parent.id)
    assert bare is not None
    with pytest.raises(InvalidRequestError, match="lazy='raise'"):
        _ = bare.children
    session.expunge_all()
    loaded = await repo.get(parent.id, options=[selectinload(ANY.parent.children)])
    assert loaded is not None and [c.id for c in loaded.children] == [child.id]
    one = await ANY.children(session).get(child.id, options=[joinedload(ANY.child.parent)])
    assert one is not None and one.parent.id == parent.id


async def test_get_or_create_returns_the_existing_row(session: WriteSession, shape: Shape) -> None:
    repo = shape.parents(session)
    data = parent_data()
    first, created = await repo.get_or_create({"name": data["name"]}, slug=data["slug"])
    again, created_again = await repo.get_or_create({"name": "other"}, slug=data["slug"])
    assert created and not created_again
    assert again.id == first.id and again.name == data["name"]
