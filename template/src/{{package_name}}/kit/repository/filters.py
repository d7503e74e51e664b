"""Turn client-supplied filter and sort names into SQL, through a whitelist.

Names are looked up among a model's mapped columns and values are coerced to the
column's Python type, so nothing a client sends is ever spliced into SQL text: a name
that is not a column, or a value of the wrong type, is an `InvalidQuery`.
"""

import uuid
from collections.abc import Collection
from collections.abc import Mapping
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from typing import TypeVar

from sqlalchemy import Select
from sqlalchemy import inspect
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from ..db.limits import INT64_MAX
from ..db.limits import INT64_MIN
from ..db.limits import storable_datetime
from ..errors import InvalidQuery
from ..errors import join_names


def column_names(model: type[Any]) -> frozenset[str]:
    return frozenset(attr.key for attr in inspect(model).column_attrs)


def column(
    model: type[Any], name: str, allowed: Collection[str], *, purpose: str
) -> InstrumentedAttribute[Any]:
    if name not in allowed:
        raise InvalidQuery(
            f"cannot {purpose} by {name!r}; allowed: {join_names(list(allowed))}",
            field=name,
        )
    attr: InstrumentedAttribute[Any] = getattr(model, name)
    return attr


def coerce(attr: InstrumentedAttribute[Any], value: object) -> object:
    """Convert `value` to the column's Python type or refuse it with a clear message,
    as well as a value of that type the database cannot store (`limits.py`)."""
    name = attr.key
    try:
        python_type = attr.type.python_type
    except NotImplementedError:  # pragma: no cover - every column type here has one
        return value
    if value is None:
        return value
    if python_type is bool and isinstance(value, bool):
        return value
    converted = _convert(python_type, value)
    if converted is None or not _storable(converted):
        raise InvalidQuery(f"{name}: {value!r} is not a valid {python_type.__name__}", field=name)
    return converted


def _convert(python_type: type[object], value: object) -> object | None:
    if isinstance(value, python_type) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    try:
        if python_type is uuid.UUID:
            return uuid.UUID(text)
        if python_type is bool:
            return {"true": True, "false": False}[text.lower()]
        if python_type is int and not isinstance(value, bool):
            return int(text)
        if python_type is datetime:
            parsed = datetime.fromisoformat(text)
            return parsed if parsed.tzinfo is not None else None  # a time zone is required
    except (ValueError, KeyError):
        pass
    return None


def _storable(value: object) -> bool:
    if isinstance(value, bool):
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, datetime):
        return value.tzinfo is not None and storable_datetime(value)
    if isinstance(value, str):
        return "\x00" not in value
    return True


def where(
    model: type[Any], filters: Mapping[str, object], allowed: Collection[str]
) -> list[ColumnElement[bool]]:
    """Equality per key; a list or tuple value means IN, None means IS NULL."""
    clauses: list[ColumnElement[bool]] = []
    for name, value in filters.items():
        attr = column(model, name, allowed, purpose="filter")
        if isinstance(value, list | tuple | set | frozenset):
            clauses.append(attr.in_([coerce(attr, item) for item in value]))
        elif value is None:
            clauses.append(attr.is_(None))
        else:
            clauses.append(attr == coerce(attr, value))
    return clauses


def parse_sort(sort: str) -> tuple[str, bool]:
    """`"created_at"` sorts ascending, `"-created_at"` descending."""
    return (sort[1:], True) if sort.startswith("-") else (sort, False)


S = TypeVar("S", bound=Select[Any])


def order_by(stmt: S, model: type[Any], sorts: Sequence[str], allowed: Collection[str]) -> S:
    for sort in sorts:
        name, descending = parse_sort(sort)
        attr = column(model, name, allowed, purpose="sort")
        stmt = stmt.order_by(attr.desc() if descending else attr.asc())
    return stmt
