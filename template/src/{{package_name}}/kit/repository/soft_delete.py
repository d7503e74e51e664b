"""Soft delete: a model whose base includes `SoftDelete` (`kit/db/mixins.py`) has its
deleted rows hidden by `deleted_at`, not removed. `Repository` (`resource.py`) asks
here, per model, at run time: the same code serves a service whose models delete
softly, one whose models delete for good, and one that mixes them.

A soft delete hides what a hard one would remove: a row whose foreign key cascades
(`ondelete="CASCADE"`) from a deleted row is hidden with it, through every read, write
and restore of its repository, and comes back when its parent is restored. Nothing is
written to the children, so restoring the parent restores exactly what was live.
"""

from typing import cast

from sqlalchemy import FromClause
from sqlalchemy import Table
from sqlalchemy import exists
from sqlalchemy import inspect
from sqlalchemy import or_
from sqlalchemy.sql.elements import ColumnElement

from ..db.mixins import SoftDelete

# The parent conditions of each model, built on first use (they depend on the model alone).
_PARENTS: dict[type[object], tuple[ColumnElement[bool], ...]] = {}


def soft_deletes(model: type[object]) -> bool:
    """Whether `model`'s rows are hidden rather than removed (its base has `SoftDelete`)."""
    return issubclass(model, SoftDelete)


def live(model: type[object]) -> tuple[ColumnElement[bool], ...]:
    """The conditions a row of `model` meets while it is to be seen: not deleted itself
    (a soft-deleting model), and no parent it cascades from deleted. None for a model
    that deletes for good under parents that do too."""
    if soft_deletes(model):
        return (model.deleted_at.is_(None), *live_parents(model))  # type: ignore[attr-defined]
    return live_parents(model)


def live_parents(model: type[object]) -> tuple[ColumnElement[bool], ...]:
    """One condition per cascading foreign key of `model` to a soft-deleting table: the
    row it refers to is live."""
    conditions = _PARENTS.get(model)
    if conditions is None:
        table = cast(Table, inspect(model).local_table)
        conditions = _PARENTS[model] = tuple(_parents_live(table, table, frozenset()))
    return conditions


def _parents_live(
    table: Table, rows: FromClause, seen: frozenset[Table]
) -> list[ColumnElement[bool]]:
    """`rows` (`table` or an alias of it) have live parents, grandparents and so on; a
    table met again on the way (a self-reference, a cycle) is checked one level deep."""
    conditions: list[ColumnElement[bool]] = []
    for key in table.foreign_key_constraints:
        referred = key.referred_table
        if (key.ondelete or "").upper() != "CASCADE" or "deleted_at" not in referred.c:
            continue
        parent = referred.alias()
        seen_here = seen | {table}
        deeper = [] if referred in seen_here else _parents_live(referred, parent, seen_here)
        local = [rows.c[element.parent.key] for element in key.elements]
        joined = [parent.c[e.column.key] == c for e, c in zip(key.elements, local, strict=True)]
        alive = exists().where(*joined, parent.c.deleted_at.is_(None), *deeper)
        alive = alive.correlate_except(parent)  # correlate to the rows, whatever the query
        nullable = [column.is_(None) for column in local if column.nullable]
        conditions.append(or_(*nullable, alive) if nullable else alive)
    return conditions
