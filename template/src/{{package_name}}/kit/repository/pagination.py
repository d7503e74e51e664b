"""Offset pages and keyset (cursor) pages over any single-entity SELECT.

Cursor pages compare the row value `(sort_column, id) > (last_value, last_id)`, with
the primary key breaking ties, and fetch one row more than asked to learn whether a
next page exists. The cursor is opaque to clients: JSON, signed with HMAC, base64url.
"""

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from typing import Generic
from typing import TypeVar

from sqlalchemy import BindParameter
from sqlalchemy import Select
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from ..db.derived import derived
from ..errors import InvalidQuery
from .filters import coerce

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    total: int
    page: int
    size: int


@dataclass(frozen=True, slots=True)
class KeysetPage(Generic[T]):
    """A page of a keyset walk; the API layer shows it as `api.pagination.CursorPage`."""

    items: list[T]
    next_cursor: str | None
    size: int


# A page's size and place are bound parameters: the statement a page runs is derived
# once from the caller's and serves every page (`derived.py`).
_LIMIT: BindParameter[int] = bindparam("page_limit")
_OFFSET: BindParameter[int] = bindparam("page_offset")
# What `encode` writes for a position; anything else in a decoded cursor is refused.
_SCALARS = (str, int, float)


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, datetime) else str(value)


class CursorCodec:
    """Signs cursors so a client can neither forge nor corrupt a position unnoticed."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _sign(self, payload: bytes) -> str:
        digest = hmac.new(self._key, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def encode(self, sort: str, values: tuple[object, object]) -> str:
        payload = json.dumps({"s": sort, "v": [_plain(v) for v in values]}).encode()
        body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
        return f"{body}.{self._sign(payload)}"

    def decode(self, cursor: str, sort: str) -> tuple[object, object]:
        """The position `cursor` holds, or `InvalidQuery` for anything this codec did not
        issue: any text, any bytes once decoded, any JSON inside a valid signature."""
        bad = InvalidQuery("cursor is malformed or was not issued by this service", field="cursor")
        body, _, signature = cursor.partition(".")
        if not (body.isascii() and signature.isascii()):
            raise bad
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except ValueError:
            raise bad from None
        if not signature or not hmac.compare_digest(signature, self._sign(payload)):
            raise bad
        try:
            data = json.loads(payload)
        except ValueError:  # not UTF-8, or not JSON
            raise bad from None
        values = data.get("v") if isinstance(data, dict) else None
        if not (
            isinstance(values, list)
            and len(values) == 2
            and all(isinstance(v, _SCALARS) for v in values)
            and isinstance(data.get("s"), str)
        ):
            raise bad
        if data["s"] != sort:
            raise InvalidQuery(
                f"cursor belongs to sort {data['s']!r}, not {sort!r}; start again without it",
                field="cursor",
            )
        first, second = values
        return first, second


async def paginate_offset(
    session: AsyncSession, stmt: Select[Any], *, page: int, size: int
) -> Page[Any]:
    count = derived(stmt, "count", lambda: select(func.count()).select_from(_unordered(stmt)))
    window = derived(stmt, "window", lambda: stmt.limit(_LIMIT).offset(_OFFSET))
    total = await session.scalar(count)
    rows = await session.scalars(window, {"page_limit": size, "page_offset": (page - 1) * size})
    return Page(items=list(rows.all()), total=total or 0, page=page, size=size)


def _unordered(stmt: Select[Any]) -> Any:
    return stmt.order_by(None).subquery()


async def paginate_cursor(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    codec: CursorCodec,
    sort_attr: InstrumentedAttribute[Any],
    id_attr: InstrumentedAttribute[Any],
    descending: bool,
    cursor: str | None,
    size: int,
) -> KeysetPage[Any]:
    sort = ("-" if descending else "") + sort_attr.key
    params: dict[str, object] = {"page_limit": size + 1}
    if cursor is not None:
        raw_value, raw_id = codec.decode(cursor, sort)
        try:
            value, key = coerce(sort_attr, raw_value), coerce(id_attr, raw_id)
        except InvalidQuery:  # a signed cursor whose values its columns cannot hold
            raise InvalidQuery("cursor is malformed", field="cursor") from None
        params |= {"after_value": value, "after_key": key}
    after = cursor is not None
    page = derived(
        stmt,
        ("keyset", sort_attr, id_attr, descending, after),
        lambda: _keyset(stmt, sort_attr, id_attr, descending=descending, after=after),
    )
    rows = list((await session.scalars(page, params)).all())
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        last = rows[-1]
        next_cursor = codec.encode(sort, (getattr(last, sort_attr.key), getattr(last, id_attr.key)))
    return KeysetPage(items=rows, next_cursor=next_cursor, size=size)


def _keyset(
    stmt: Select[Any],
    sort_attr: InstrumentedAttribute[Any],
    id_attr: InstrumentedAttribute[Any],
    *,
    descending: bool,
    after: bool,
) -> Select[Any]:
    """The next `:page_limit` rows of `stmt` in (sort, id) order, after the position
    `(:after_value, :after_key)` if `after`."""
    if after:
        # Typed parameters: each value is bound the way its column stores it.
        position = tuple_(
            bindparam("after_value", type_=sort_attr.type),
            bindparam("after_key", type_=id_attr.type),
        )
        key = tuple_(sort_attr, id_attr)
        stmt = stmt.where(key < position if descending else key > position)
    order = (sort_attr.desc(), id_attr.desc()) if descending else (sort_attr.asc(), id_attr.asc())
    return stmt.order_by(*order).limit(_LIMIT)
