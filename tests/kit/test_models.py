"""The models' base: keys, names of constraints and indexes, timestamps, versions, the
messages of violated constraints, and how a row reads."""

import uuid
from typing import cast

from service.kit.db.base import Base
from service.kit.db.constraints import constraint_messages, default_message
from service.kit.db.naming import NAMING_CONVENTION
from service.kit.db.session import WriteSession
from service.kit.db.types import Timestamp, UTCDateTime
from service.kit.db.uuid7 import uuid7
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    Table,
    UniqueConstraint,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.schema import CreateTable

from .resource import SHAPES, Shape


def test_constraint_messages_are_found_by_the_names_the_convention_gives() -> None:
    """A model's constraint declares its message; the kit finds it by the constraint's
    conventional name (a violation names the constraint, not the model)."""
    messages = constraint_messages()
    assert messages["uq_parent_uuid_soft_slug"] == "a parent with this slug already exists"
    assert messages["ck_child_int_hard_priority_range"] == "priority must be between 0 and 5"
    assert messages["fk_child_int_soft_parent_id_parent_int_soft"] == "the parent does not exist"


def test_a_constraint_without_a_message_is_answered_with_its_columns() -> None:
    """A team's constraint needs no message: the default names the fields to change."""
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    Table("parent", metadata, Column("id", Integer, primary_key=True))
    Table(
        "child",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent_id", ForeignKey("parent.id")),
        Column("code", Integer),
        UniqueConstraint("parent_id", "code"),
    )
    unique = default_message("unique", "uq_child_parent_id_code", metadata)
    assert unique == "a record with the same parent_id and code already exists"
    key = default_message("foreign_key", "fk_child_parent_id_parent", metadata)
    assert key == "a record referenced by parent_id does not exist (or is still referenced)"
    unnamed = default_message("foreign_key", "", metadata)  # SQLite names no foreign key
    assert unnamed == "a referenced record does not exist (or is still referenced)"
    assert default_message("check", "ck_child_rule", metadata).startswith("the data breaks")


def test_constraints_and_indexes_left_unnamed_get_conventional_names() -> None:
    """The models' metadata names what a model leaves unnamed by the convention: the
    dialects find a violated constraint's message by that name."""
    metadata = MetaData(naming_convention=Base.metadata.naming_convention)
    Table("parent", metadata, Column("id", Integer, primary_key=True))
    child = Table(
        "child",
        metadata,
        Column("id", Integer, primary_key=True),
        Column("parent_id", ForeignKey("parent.id"), index=True),
        Column("code", Integer),
        UniqueConstraint("parent_id", "code"),
        CheckConstraint("code > 0", name="positive"),
    )
    names = {str(c.name) for c in child.constraints} | {str(i.name) for i in child.indexes}
    assert names == {
        "pk_child",
        "fk_child_parent_id_parent",
        "uq_child_parent_id_code",
        "ck_child_positive",
        "ix_child_parent_id",
    }


def test_uuid7_is_version_7_and_time_ordered() -> None:
    keys = [uuid7() for _ in range(1000)]
    assert all(key.version == 7 and key.variant == uuid.RFC_4122 for key in keys)
    assert len(set(keys)) == 1000
    # Milliseconds lead, so keys made in later milliseconds sort later.
    assert [k.int >> 80 for k in keys] == sorted(k.int >> 80 for k in keys)


async def test_server_sets_timestamps_and_mapper_sets_version(
    session: WriteSession, shape: Shape
) -> None:
    parent = await shape.parents(session).create(name="Stamped", slug="stamped")
    assert parent.created_at.tzinfo is not None
    assert 0 <= (parent.updated_at - parent.created_at).total_seconds() < 1
    assert parent.version == 1
    assert isinstance(parent.id, uuid.UUID if shape.uuid_keys else int)
    if shape.soft:
        assert parent.is_deleted is False
    else:
        assert "deleted_at" not in shape.parent.__table__.c


def test_timestamps_pass_as_the_driver_reads_them_where_the_backend_keeps_the_zone(
    engine: AsyncEngine,
) -> None:
    """PostgreSQL's timestamptz comes back aware: `Timestamp` leaves the driver's value as
    it is, with no call of its own per value read or written (a page of parents with
    their children reads hundreds). Where the column holds UTC without a zone, each
    value read is made aware again (test_server_sets_timestamps_and_mapper_sets_version)."""
    dialect = engine.dialect
    impl = Timestamp.dialect_impl(dialect)
    assert isinstance(impl, UTCDateTime)
    driver = impl.impl_instance
    reads, writes = impl.result_processor(dialect, None), impl.bind_processor(dialect)
    if dialect.name == "postgresql":
        assert reads is driver.result_processor(dialect, None)
        assert writes is driver.bind_processor(dialect)
    else:
        assert reads is not None and writes is not None


async def test_a_deleted_rows_key_is_never_given_to_a_new_row(
    session: WriteSession, shape: Shape
) -> None:
    """A client holding a deleted row's key gets a 404 by it, never another row: deleting
    the newest row for good (even where deletes are soft) must not free its key for the
    next INSERT, as SQLite's rowid without AUTOINCREMENT would (the largest key + 1)."""
    parents, children = shape.parents(session), shape.children(session)
    parent = await parents.create(name="Keyed", slug="keyed")
    issued = [parent.id]
    for n in range(2):
        child = await children.create(parent_id=parent.id, title=f"child {n}")
        issued.append(child.id)
        await session.execute(delete(shape.child).where(shape.child.id == child.id))
    newest = await children.create(parent_id=parent.id, title="newest")
    assert newest.id not in issued, (newest.id, issued)
    await session.execute(delete(shape.child).where(shape.child.id == newest.id))
    await session.execute(delete(shape.parent).where(shape.parent.id == parent.id))
    again = await parents.create(name="Again", slug="keyed-again")
    assert again.id != parent.id


async def test_repr_and_to_dict(session: WriteSession, shape: Shape) -> None:
    parent = await shape.parents(session).create(name="Repr", slug="repr")
    assert repr(parent) == f"<{type(parent).__name__} {parent.id!r}>"
    data = parent.to_dict()
    assert data["name"] == "Repr" and data["id"] == parent.id
    assert "children" not in data


def test_statements_compile_without_a_database() -> None:
    """`str(statement)` (a log line, a debugger, a library that compiles to inspect) uses
    SQLAlchemy's generic dialect, which is none of the backends: the kit's time types and
    clocks take their generic spelling there instead of refusing it."""
    parent = SHAPES["int-soft"].parent
    assert "FROM parent_int_soft" in str(select(parent))
    inserted = str(insert(parent).values(name="n", slug="s", description=""))
    assert "INSERT INTO parent_int_soft" in inserted
    changed = str(update(parent).values(name="m").where(parent.id == 1))
    assert "UPDATE parent_int_soft" in changed
    assert "CURRENT_TIMESTAMP" in str(CreateTable(cast(Table, parent.__table__)))
