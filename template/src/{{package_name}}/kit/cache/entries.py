"""`Cached`: a service's one-line opt-in, and how every write finds what it made stale.

    class ProjectService(Service[Project]):
        repository = ProjectRepository
        resource = "project"
        cached = Cached(ProjectRead)

Its `read` (kit/repository/resource.py) then answers a get by id from Redis, as the
schema's JSON serialized once; with no cache configured (REDIS_URL), from the database,
serialized the same way. Keys are `<prefix>:<resource>:<schema hash>:<id>`: the hash is of the
schema's JSON Schema, so a release that changes the response reads and writes keys of
its own, and never meets what an older release stored, even mid-deploy.

No service method has to remember the cache. Once the process has opened its cache
(`listen`), every flush of a `WriteSession` records the cached rows it changes or
deletes; a deletion (soft or hard) also records the cached rows that cascade from the
deleted one, since it hides or removes them; an UPDATE or DELETE statement on a cached
table (`update_many`) records the rows its WHERE matches. Once the unit of work has
sent its COMMIT (`kit/db/session.py`), those entries are dropped, before the response
is sent; after a soft delete, with the rows under the deleted ones read again then (a
row added beside the deletion is hidden by it too).
"""

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from typing import TYPE_CHECKING
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Column
from sqlalchemy import Connection
from sqlalchemy import Table
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy import select
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import DMLWhereBase

from ..db.session import AFTER_COMMIT
from ..db.session import ReadSession
from ..db.session import WriteSession
from . import CACHE

if TYPE_CHECKING:  # Redis is imported only where a cache is configured (`open_cache`)
    from .store import Cache

log = logging.getLogger(__name__)
# session.info keys (beside CACHE, the process's cache): the keys the unit of work under
# way made stale.
_STALE = "cache_stale"
# ... and the rows it soft-deleted, by table, whose hidden children are read after COMMIT.
_HIDDEN = "cache_hidden"
# Every cached model's table, and its `Cached`.
_TABLES: dict[Table, "Cached"] = {}


class Cached:
    """Set on a `Service` subclass: its get by id is cached as `schema`'s JSON. Change
    `version` when the JSON changes while the schema does not (a serializer's logic)."""

    def __init__(self, schema: type[BaseModel], *, version: str = "") -> None:
        self.schema = schema
        document = json.dumps(schema.model_json_schema(mode="serialization"), sort_keys=True)
        self.version = hashlib.sha256((document + version).encode()).hexdigest()[:12]
        self.namespace = ""

    def __set_name__(self, owner: type[Any], _name: str) -> None:
        """Learn the service's resource and model (set in the same class body)."""
        self.namespace = f"{owner.resource}:{self.version}:"
        _TABLES[owner.repository.model.__table__] = self

    def key(self, id: object) -> str:
        return f"{self.namespace}{id}"

    async def read(
        self, session: ReadSession, id: Any, get: Callable[[ReadSession, Any], Awaitable[Any]]
    ) -> bytes:
        """`get(session, id)` as JSON, through the session's cache if it has one."""

        async def load() -> bytes:
            return self.schema.model_validate(await get(session, id)).model_dump_json().encode()

        cache: Cache | None = session.info.get(CACHE)
        if cache is None:  # a session made elsewhere (tests, scripts): the database answers
            return await load()
        return await cache.read(self.key(id), load)


def _stale(session: Session) -> set[str]:
    stale: set[str] = session.info.setdefault(_STALE, set())
    return stale


def _cascading(table: Table) -> list[tuple[Table, Column[Any]]]:
    """Each cached table whose rows go (or hide) with `table`'s, and its key column."""
    found: list[tuple[Table, Column[Any]]] = []
    for child in _TABLES:
        for key in child.foreign_key_constraints:
            if key.referred_table is table and (key.ondelete or "").upper() == "CASCADE":
                found.extend((child, column) for column in key.columns)
    return found


def _dependents(conn: Connection, table: Table, ids: Iterable[Any], depth: int = 0) -> set[str]:
    """The keys of the cached rows that cascade from `ids` of `table`, at any depth."""
    keys: set[str] = set()
    ids = list(ids)
    if not ids or depth > 8:
        return keys
    for child, column in _cascading(table):
        rows = list(conn.scalars(select(child.c.id).where(column.in_(ids))))
        keys.update(_TABLES[child].key(row) for row in rows)
        keys |= _dependents(conn, child, rows, depth + 1)
    return keys


def _deletion_changed(obj: object) -> bool:
    """Whether the flush hides the row: it changes the column its model marks `hides_row`."""
    state = inspect(obj)
    for column in state.mapper.columns:
        if column.info.get("hides_row"):
            key = state.mapper.get_property_by_column(column).key
            return bool(state.attrs[key].history.has_changes())
    return False


def record_flush(session: Session, _context: Any, _instances: Any) -> None:
    """Before a flush: the cached rows it changes or deletes, and what cascades from them."""
    if not _TABLES or session.info.get(CACHE) is None:
        return
    stale = _stale(session)
    deleted: dict[Table, list[Any]] = {}
    for obj in (*session.dirty, *session.deleted):
        table = getattr(type(obj), "__table__", None)
        if table is None:
            continue
        if table in _TABLES:
            stale.add(_TABLES[table].key(obj.id))
        if obj in session.deleted or _deletion_changed(obj):
            deleted.setdefault(table, []).append(obj.id)
            if obj not in session.deleted:
                _hidden(session).setdefault(table, set()).add(obj.id)
    for table, ids in deleted.items():
        stale |= _dependents(session.connection(), table, ids)


def record_statement(state: ORMExecuteState) -> None:
    """Before an UPDATE or DELETE statement: the cached rows its WHERE matches, and what
    cascades from them (read in the same transaction, just before it runs)."""
    if not (state.is_update or state.is_delete) or not _TABLES:
        return
    if state.session.info.get(CACHE) is None:
        return
    statement = state.statement
    table = getattr(statement, "table", None)
    if not isinstance(table, Table) or not isinstance(statement, DMLWhereBase):
        return
    if table not in _TABLES and not _cascading(table):
        return
    matched = select(table.c.id)
    if statement.whereclause is not None:
        matched = matched.where(statement.whereclause)
    conn = state.session.connection()
    ids = list(conn.scalars(matched))
    stale = _stale(state.session)
    if table in _TABLES:
        stale.update(_TABLES[table].key(id) for id in ids)
    stale |= _dependents(conn, table, ids)


async def drop_stale(session: WriteSession) -> None:
    """After a COMMIT: drop what the unit of work recorded. Shielded: a request cancelled
    now (its client hung up) has committed, and its drops must still happen."""
    stale: set[str] = session.info.pop(_STALE, None) or set()
    hidden: dict[Table, set[Any]] = session.info.pop(_HIDDEN, None) or {}
    cache: Cache | None = session.info.get(CACHE)
    if cache is None:
        return
    if stale:
        await asyncio.shield(cache.invalidate(stale))
    if hidden and (more := await _hidden_since(session, hidden) - stale):
        await asyncio.shield(cache.invalidate(more))


def _hidden(session: Session) -> dict[Table, set[Any]]:
    hidden: dict[Table, set[Any]] = session.info.setdefault(_HIDDEN, {})
    return hidden


async def _hidden_since(session: WriteSession, hidden: dict[Table, set[Any]]) -> set[str]:
    """The cached rows a committed soft delete hides, read again after its COMMIT.

    The flush recorded the rows under the deleted ones as they were then; a row another
    transaction added under them before this one committed (PostgreSQL lets an INSERT
    through beside a non-key UPDATE of its parent) was read, and maybe cached, as live,
    and is hidden from the COMMIT on. Read after it, nothing the deletion hides is
    missed, and a read that cached such a row before is dropped with the others.
    """

    def read(sync: Session) -> set[str]:
        connection = sync.connection()
        return set().union(*(_dependents(connection, t, ids) for t, ids in hidden.items()))

    try:
        keys = await session.run_sync(read)
        await session.commit()  # ends the read's transaction; nothing was written
    except Exception:
        # The commit's outcome is unknown, or the database is gone: drop what the flush
        # recorded, and let the entries' time to live end the rest.
        log.warning("cache: rows under a deletion could not be read again", exc_info=True)
        return set()
    return keys


def listen() -> None:
    """Have every write session record what it makes stale, and drop it after COMMIT.

    Called when the process opens its cache (`open_cache`), once: a service without one
    runs no hook on its flushes, statements and commits.
    """
    session_class = WriteSession.sync_session_class
    if event.contains(session_class, "before_flush", record_flush):
        return
    event.listen(session_class, "before_flush", record_flush)
    event.listen(session_class, "do_orm_execute", record_statement)
    AFTER_COMMIT.append(drop_stale)
