"""What every resource builds on: `Repository` and `Service` (its model derives from the
service's own `entity.py`).

A resource's package subclasses these two and stays plain Python: how rows are keyed,
stamped, versioned and deleted is settled here, once for the whole service. Deleting
follows the model: one whose base includes `SoftDelete` has its rows hidden by
`deleted_at` and restorable (`soft_delete.py`); any other has them removed.

Services hold no state: one instance per resource serves every request, and each
method takes the session it works in. Reads take a `ReadSession` (a `WriteSession` is
one too); writes take a `WriteSession` and run as a `@unit_of_work`, so mypy refuses a
write on a read path and exactly one place commits.

A service opts its get by id into the cache with one line, `cached = Cached(ReadSchema)`,
and its route answers `read`'s JSON (`kit/cache/`). Without a configured cache, `read`
serializes the row the database returns.
"""

from collections.abc import Mapping
from datetime import UTC
from datetime import datetime
from typing import ClassVar
from typing import Generic

from sqlalchemy import Index
from sqlalchemy import Table
from sqlalchemy import event
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.elements import quoted_name

from ..cache.entries import Cached
from ..db.keys import AnyKey as Key
from ..db.session import ReadSession
from ..db.session import WriteSession
from ..db.session import unit_of_work
from ..errors import Conflict
from ..errors import NotFound
from ..errors import StaleVersion
from .repository import BaseRepository
from .repository import ModelT
from .soft_delete import live
from .soft_delete import live_parents
from .soft_delete import soft_deletes

# The condition of a live row, for the partial indexes of soft-deleting tables.
_LIVE_ROWS = "deleted_at IS NULL"
# The backends that index part of a table; MariaDB and MySQL index every row.
_PARTIAL_INDEXES = ("postgresql", "sqlite")


def listing_index(table: str, *columns: str) -> Index:
    """The index a listing in `columns` order walks.

    On a table with `deleted_at`, of live rows only, as listings read them: a partial
    index named `ix_<table>_live_<columns>` (MariaDB and MySQL, which have none, index
    every row under that name). On any other table, the naming convention's index.
    Which one is settled when the index joins its table, whose columns say it.
    """
    index = Index(None, *columns)

    def of_live_rows(_index: Index, parent: Table) -> None:
        if "deleted_at" not in parent.c:
            return
        index.name = quoted_name(f"ix_{table}_live_{'_'.join(columns)}", None)
        for backend in _PARTIAL_INDEXES:
            index.dialect_kwargs[f"{backend}_where"] = text(_LIVE_ROWS)

    event.listen(index, "after_parent_attach", of_live_rows)
    return index


class NotSoftDeleted(TypeError):
    """A restore asked of a model whose rows are removed, not hidden: a route or a call
    that only a soft-deleting model can serve."""

    def __init__(self, model: type[object]) -> None:
        super().__init__(
            f"{model.__name__} rows are deleted for good, so none can be restored: "
            "its base has no SoftDelete (the service's entity.py)"
        )


class Repository(BaseRepository[ModelT], Generic[ModelT]):
    """A model's repository base: rows a soft delete hid (the model's own, or a parent's
    it cascades from) are invisible unless asked for; `delete` hides or removes by the
    model."""

    managed: ClassVar[frozenset[str]] = BaseRepository.managed | {"deleted_at"}

    def visible(self) -> tuple[ColumnElement[bool], ...]:
        return live(self.model)

    async def get_including_deleted(self, id: Key) -> ModelT | None:
        """The row even if it is deleted, but not while a parent of it is (restore the
        parent first)."""
        stmt = select(self.model).where(self.by_id(id), *live_parents(self.model))
        return await self.get_one_or_none(stmt)

    async def get_or_create(
        self, defaults: Mapping[str, object] | None = None, **keys: object
    ) -> tuple[ModelT, bool]:
        """As `BaseRepository.get_or_create`, but a hidden row holding `keys` is a
        `Conflict`, never handed out as the existing one."""
        obj, created = await super().get_or_create(defaults, **keys)
        if not created and self.visible() and await self.get(obj.id) is None:  # type: ignore[attr-defined]
            raise Conflict("a deleted record holds these values; restore it, or delete it for good")
        return obj, created

    async def delete(self, obj: ModelT, *, hard: bool = False) -> None:
        """Hide the row of a soft-deleting model: set `deleted_at` (from the app's UTC
        clock, so no read-back is needed). Remove it otherwise, or with `hard=True`."""
        if hard or not soft_deletes(self.model):
            await super().delete(obj)
            return
        obj.deleted_at = datetime.now(UTC)  # type: ignore[attr-defined]
        await self.session.flush()

    async def restore(self, obj: ModelT) -> ModelT:
        if not soft_deletes(self.model):
            raise NotSoftDeleted(self.model)
        obj.deleted_at = None  # type: ignore[attr-defined]
        await self.session.flush()
        return obj


class Service(Generic[ModelT]):
    """The operations every resource offers. Subclasses set `repository` and `resource`."""

    repository: type[Repository[ModelT]]
    resource: str
    # `Cached(ReadSchema)`: `read` answers from the cache, and every write drops the entry.
    cached: ClassVar[Cached | None] = None

    @property
    def restorable(self) -> bool:
        """Whether a deleted row can be restored: the model deletes softly. A router adds
        its restore route only then."""
        return soft_deletes(self.repository.model)

    async def get(self, session: ReadSession, id: Key) -> ModelT:
        obj = await self.repository(session).get(id)
        if obj is None:
            raise NotFound(self.resource, id)
        return obj

    async def read(self, session: ReadSession, id: Key) -> bytes:
        """`get`'s row as the `cached` schema's JSON, from the cache when it holds it;
        concurrent misses on one row in this process run one query."""
        if self.cached is None:
            raise TypeError(f"{type(self).__name__}.read needs `cached = Cached(ReadSchema)`")
        return await self.cached.read(session, id, self.get)

    @unit_of_work
    async def update(
        self, session: WriteSession, id: Key, version: int, values: Mapping[str, object]
    ) -> ModelT:
        obj = await self.get(session, id)
        current: int = obj.version  # type: ignore[attr-defined]
        if current != version:
            raise StaleVersion(self.resource, expected=version, actual=current)
        return await self.repository(session).update(obj, values)

    @unit_of_work
    async def delete(self, session: WriteSession, id: Key) -> None:
        await self.repository(session).delete(await self.get(session, id))

    @unit_of_work
    async def restore(self, session: WriteSession, id: Key) -> ModelT:
        """Bring a soft-deleted row back; `NotSoftDeleted` for a model without soft delete."""
        repository = self.repository(session)
        if not soft_deletes(repository.model):
            raise NotSoftDeleted(repository.model)
        obj = await repository.get_including_deleted(id)
        if obj is None:
            raise NotFound(self.resource, id)
        return await repository.restore(obj)
