"""Pages of rows: offset pages with their total, cursor pages that visit every row once,
the statements derived for them, and cursors a client may have forged or broken."""

import base64
import gc
import json
import weakref
from datetime import UTC, datetime

import pytest
from service.kit.db import derived as derived_module
from service.kit.errors import InvalidQuery
from service.kit.repository.pagination import CursorCodec
from sqlalchemy.ext.asyncio import AsyncSession

from .factories import make_parent
from .resource import ANY, SHAPES, Parent, Shape

CODEC = CursorCodec("test-secret")


async def _many_children(session: AsyncSession, count: int, shape: Shape = ANY) -> Parent:
    """`count` children whose created_at takes only 4 distinct values: ties everywhere."""
    parent = await make_parent(session, shape)
    stamps = [datetime(2024, 1, day, tzinfo=UTC) for day in (1, 2, 3, 4)]
    rows = [
        {"parent_id": parent.id, "title": f"t{i}", "priority": i % 6, "created_at": stamps[i % 4]}
        for i in range(count)
    ]
    await shape.children(session).create_many(rows)
    return parent


async def test_offset_pages_report_the_total(session: AsyncSession) -> None:
    parent = await _many_children(session, 45)
    repo = ANY.children(session)
    page = await repo.paginate_offset(repo.in_parent(parent.id), page=3, size=20)
    assert page.total == 45 and len(page.items) == 5 and page.page == 3


async def test_pages_of_a_kept_statement_each_get_their_own_rows(session: AsyncSession) -> None:
    """A statement paged again and again derives its page statements once (`derived.py`):
    each page still binds its own place, size and position."""
    parent = await _many_children(session, 45)
    repo = ANY.children(session)
    stmt = repo.in_parent(parent.id)
    places = [(1, 10), (2, 20), (3, 15)]  # rows 0-9, 20-39, 30-44
    pages = [await repo.paginate_offset(stmt, page=n, size=size) for n, size in places]
    assert [len(page.items) for page in pages] == [10, 20, 15]
    offset_ids = {child.id for page in pages for child in page.items}
    seen: list[object] = []
    cursor = None
    for size in (7, 13, 100):
        page = await repo.paginate_cursor(
            stmt, codec=CODEC, sort="-priority", cursor=cursor, size=size
        )
        seen.extend(child.id for child in page.items)
        cursor = page.next_cursor
    assert len(seen) == len(set(seen)) == 45 and cursor is None
    assert len(offset_ids) == 35 and offset_ids < set(seen)


async def test_derived_statements_let_their_statement_go(session: AsyncSession) -> None:
    parent = await make_parent(session, ANY)
    repo = ANY.children(session)
    stmt = repo.in_parent(parent.id)
    await repo.paginate_offset(repo.order(stmt, ["-priority"]), page=1, size=5)
    await repo.paginate_cursor(stmt, codec=CODEC, sort="created_at", cursor=None, size=5)
    gone = weakref.ref(stmt)
    del stmt
    gc.collect()
    assert gone() is None


async def test_sorts_a_client_varies_keep_a_statements_memory_bounded(
    session: AsyncSession,
) -> None:
    """A sort list repeated in ever new lengths derives new statements from a statement
    that lives as long as the process: past a bound they are built per call, not kept."""
    parent = await _many_children(session, 12)
    repo = ANY.children(session)
    stmt = repo.in_parent(parent.id)
    for n in range(1, 3 * derived_module._MOST_PER_STATEMENT):
        page = await repo.paginate_offset(repo.order(stmt, ["-priority"] * n), page=1, size=3)
        assert [child.priority for child in page.items] == [5, 5, 4]
    assert len(derived_module._DERIVED[stmt]) == derived_module._MOST_PER_STATEMENT


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "priority", "-priority"])
async def test_cursor_pages_visit_every_row_exactly_once(session: AsyncSession, sort: str) -> None:
    parent = await _many_children(session, 1050)
    repo = ANY.children(session)
    seen: list[object] = []
    cursor = None
    pages = 0
    while True:
        page = await repo.paginate_cursor(
            repo.in_parent(parent.id), codec=CODEC, sort=sort, cursor=cursor, size=100
        )
        seen.extend(child.id for child in page.items)
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert len(seen) == 1050 and len(set(seen)) == 1050
    assert pages == 11


def signed(payload: bytes) -> str:
    """A cursor holding `payload` with a valid signature, as only the secret's holder makes."""
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{body}.{CODEC._sign(payload)}"


def position(value: object, key: object) -> str:
    return signed(json.dumps({"s": "created_at", "v": [value, key]}).encode())


A_TIME = "2024-01-01T00:00:00+00:00"


def malformed(key: str) -> dict[str, str]:
    """By class: any text a client can send, then valid signatures over anything but a
    position; `key` is a valid key of the shape's kind, as text."""
    return {
        "empty": "",
        "no signature": "e30",
        "not base64": "!!!.???",
        "non-ASCII signature": "e30.\u00e9",
        "non-ASCII body": "\u00e9.AAAA",
        "lone surrogate": "e30.\ud800",
        "NUL": "\x00.\x00",
        "forged signature": "eyJzIjogImNyZWF0ZWRfYXQifQ.bad-signature",
        "signature of another payload": "e30." + signed(b"[]").partition(".")[2],
        "signed, not UTF-8": signed(b"\xff\xfe\x00"),
        "signed, not JSON": signed(b"not json"),
        "signed, empty": signed(b""),
        "signed JSON null": signed(b"null"),
        "signed JSON list": signed(b'["created_at", ["a", "b"]]'),
        "signed, no values": signed(b'{"s": "created_at"}'),
        "signed, one value": signed(b'{"s": "created_at", "v": ["a"]}'),
        "signed, three values": signed(b'{"s": "created_at", "v": ["a", "b", "c"]}'),
        "signed, values a string": signed(b'{"s": "created_at", "v": "ab"}'),
        "signed, sort not a string": signed(b'{"s": 1, "v": ["a", "b"]}'),
        "value a list": position([A_TIME], key),
        "value null": position(None, key),
        "value true": position(True, key),
        "value not a time": position("yesterday", key),
        "value without a zone": position("2024-01-01T00:00:00", key),
        "value out of range": position("0001-01-01T00:00:00+14:00", key),
        "value a number": position(1.5, key),
        "key an object": position(A_TIME, {"id": key}),
        "key null": position(A_TIME, None),
        "key not a key": position(A_TIME, "not-a-key"),
        "key out of 64 bits": position(A_TIME, 2**64),
        "key a float": position(A_TIME, 1e300),
    }


# Each shape's key kind, with each malformed cursor.
MALFORMED = [
    pytest.param(shape, cursor, id=f"{shape.name}-{name}")
    for shape in (SHAPES["uuid-soft"], SHAPES["int-hard"])
    for name, cursor in malformed(str(shape.missing_key())).items()
]


@pytest.mark.parametrize(("shape", "cursor"), MALFORMED)
async def test_malformed_or_forged_cursors_are_refused(
    session: AsyncSession, shape: Shape, cursor: str
) -> None:
    repo = shape.parents(session)
    with pytest.raises(InvalidQuery, match="cursor is malformed") as refused:
        await repo.paginate_cursor(
            repo.select(), codec=CODEC, sort="created_at", cursor=cursor, size=5
        )
    assert refused.value.field == "cursor"


async def test_a_well_formed_position_is_taken(session: AsyncSession) -> None:
    """A signed position the service did not issue still pages from where it says."""
    parent = await _many_children(session, 8)  # two children a day, January 1 to 4
    repo = ANY.children(session)
    noon = position(
        "2024-01-02T12:00:00+00:00", str(ANY.missing_key())
    )  # between the days: the key is moot
    page = await repo.paginate_cursor(
        repo.in_parent(parent.id), codec=CODEC, sort="created_at", cursor=noon, size=5
    )
    assert [child.created_at.day for child in page.items] == [3, 3, 4, 4]


async def test_a_tampered_cursor_is_refused(session: AsyncSession) -> None:
    genuine = CODEC.encode("created_at", ("2024-01-01T00:00:00+00:00", str(ANY.missing_key())))
    body, signature = genuine.split(".")
    tampered = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1] + "." + signature
    repo = ANY.parents(session)
    with pytest.raises(InvalidQuery, match="cursor is malformed"):
        await repo.paginate_cursor(
            repo.select(), codec=CODEC, sort="created_at", cursor=tampered, size=5
        )
    other_key = CursorCodec("another-secret")
    with pytest.raises(InvalidQuery, match="cursor is malformed"):
        await repo.paginate_cursor(
            repo.select(), codec=other_key, sort="created_at", cursor=genuine, size=5
        )


async def test_a_cursor_from_another_sort_is_refused(session: AsyncSession) -> None:
    cursor = CODEC.encode("name", ("x", str(ANY.missing_key())))
    repo = ANY.parents(session)
    with pytest.raises(InvalidQuery, match="belongs to sort 'name'"):
        await repo.paginate_cursor(
            repo.select(), codec=CODEC, sort="created_at", cursor=cursor, size=5
        )
