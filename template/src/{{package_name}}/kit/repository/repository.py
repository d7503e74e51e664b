"""`BaseRepository[ModelT]`: typed data access that every model's repository extends.

Statements are values: `select()` gives the base statement (behaviour mixins such as
soft delete add conditions through `visible()`), callers refine it, and
`get_one_or_none`, `paginate_offset` and `paginate_cursor` execute it. Repositories
flush but never commit: the unit of work in the service layer owns the transaction.
"""

from collections.abc import Collection
from collections.abc import Mapping
from collections.abc import Sequence
from typing import Any
from typing import ClassVar
from typing import Generic
from typing import TypeVar
from typing import cast

from sqlalchemy import Select
from sqlalchemy import bindparam
from sqlalchemy import exists
from sqlalchemy import func
from sqlalchemy import literal
from sqlalchemy import select
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.base import ExecutableOption
from sqlalchemy.sql.elements import ColumnElement

from ..db.base import Base
from ..db.derived import derived
from ..db.dialect import insert_or_none
from ..db.keys import AnyKey
from ..db.mixins import VersionedMixin
from ..errors import Conflict
from . import filters as f
from .pagination import CursorCodec
from .pagination import KeysetPage
from .pagination import Page
from .pagination import paginate_cursor
from .pagination import paginate_offset

ModelT = TypeVar("ModelT", bound=Base)
# Statements that depend on the repository class alone, built on first use.
_SELECT: dict[type[Any], Select[Any]] = {}
_BY_ID: dict[type[Any], Select[Any]] = {}
# How often `get_or_create` tries again when the row in its way vanished before it read it.
_GET_OR_CREATE_ROUNDS = 3


class BaseRepository(Generic[ModelT]):
    model: type[ModelT]
    # Columns clients may sort by; the primary key is always the tiebreaker.
    sortable: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at"})
    # Columns clients may filter on; None means every mapped column.
    filterable: ClassVar[frozenset[str] | None] = None
    # Columns the database or the mapper maintains; `update` refuses to set them.
    managed: ClassVar[frozenset[str]] = frozenset({"id", "created_at", "updated_at", "version"})

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # -- statements ---------------------------------------------------------------

    @property
    def _id(self) -> InstrumentedAttribute[Any]:
        return cast(InstrumentedAttribute[Any], self.model.id)  # type: ignore[attr-defined]

    def _filterable(self) -> Collection[str]:
        return self.filterable if self.filterable is not None else f.column_names(self.model)

    def visible(self) -> tuple[ColumnElement[bool], ...]:
        """Conditions every statement of this repository applies; none here.

        They must depend on the class alone: `select` is built once per class.
        """
        return ()

    def select(self) -> Select[ModelT]:
        """The base statement, built once per class (statements are immutable values)."""
        stmt = _SELECT.get(type(self))
        if stmt is None:
            stmt = _SELECT[type(self)] = select(self.model).where(*self.visible())
        return stmt

    def _by_id(self) -> Select[ModelT]:
        """The lookup by primary key, built once per class with an `:id` parameter.

        Building a statement and computing its cache key cost more CPU than running the
        query on a lookup by id; a statement built once is only looked up in the cache.
        """
        stmt = _BY_ID.get(type(self))
        if stmt is None:
            stmt = _BY_ID[type(self)] = self.select().where(self._id == bindparam("id"))
        return stmt

    def by_id(self, id: AnyKey) -> ColumnElement[bool]:
        return self._id == id  # type: ignore[no-any-return]

    def filter(self, stmt: Select[ModelT], filters: Mapping[str, object]) -> Select[ModelT]:
        return stmt.where(*f.where(self.model, filters, self._filterable()))

    def order(self, stmt: Select[ModelT], sorts: Sequence[str]) -> Select[ModelT]:
        """Order by whitelisted columns (`-name` descends); the primary key breaks ties."""
        key = ("order", type(self), *sorts)
        return derived(stmt, key, lambda: f.order_by(stmt, self.model, sorts, self.sortable))

    # -- reads --------------------------------------------------------------------

    async def get_one_or_none(
        self, stmt: Select[ModelT], params: Mapping[str, object] | None = None
    ) -> ModelT | None:
        return (await self.session.scalars(stmt, params)).one_or_none()

    async def get(
        self,
        id: AnyKey,
        *,
        options: Sequence[ExecutableOption] = (),
        for_update: bool = False,
    ) -> ModelT | None:
        if not options and not for_update and type(self).by_id is BaseRepository.by_id:
            return await self.get_one_or_none(self._by_id(), {"id": id})
        stmt = self.select().where(self.by_id(id)).options(*options)
        if for_update:
            # Row lock until the transaction ends; populate_existing refreshes a cached copy.
            stmt = stmt.with_for_update().execution_options(populate_existing=True)
        return await self.get_one_or_none(stmt)

    async def get_by(self, **filters: object) -> ModelT | None:
        return await self.get_one_or_none(self.filter(self.select(), filters))

    async def count(self, filters: Mapping[str, object] | None = None) -> int:
        stmt = self.filter(self.select(), filters or {})
        return await self.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0

    async def exists(self, **filters: object) -> bool:
        return bool(await self.session.scalar(select(exists(self.filter(self.select(), filters)))))

    async def paginate_offset(self, stmt: Select[ModelT], *, page: int, size: int) -> Page[ModelT]:
        ordered = derived(stmt, ("by id", type(self)), lambda: stmt.order_by(self._id))
        return await paginate_offset(self.session, ordered, page=page, size=size)

    async def paginate_cursor(
        self,
        stmt: Select[ModelT],
        *,
        codec: CursorCodec,
        sort: str,
        cursor: str | None,
        size: int,
    ) -> KeysetPage[ModelT]:
        name, descending = f.parse_sort(sort)
        sort_attr = f.column(self.model, name, self.sortable, purpose="sort")
        return await paginate_cursor(
            self.session,
            stmt,
            codec=codec,
            sort_attr=sort_attr,
            id_attr=self._id,
            descending=descending,
            cursor=cursor,
            size=size,
        )

    async def after(
        self,
        stmt: Select[ModelT],
        sort_attr: InstrumentedAttribute[Any],
        position: tuple[object, object] | None,
        *,
        size: int,
    ) -> list[ModelT]:
        """The next `size` rows of `stmt` in (sort, id) order after `position` (keyset)."""
        if position is not None:
            value, key = position
            after = tuple_(literal(value, sort_attr.type), literal(key, self._id.type))
            stmt = stmt.where(tuple_(sort_attr, self._id) > after)
        rows = await self.session.scalars(stmt.order_by(sort_attr, self._id).limit(size))
        return list(rows.all())

    # -- writes -------------------------------------------------------------------

    async def create(self, **values: object) -> ModelT:
        obj = self.model(**values)
        self.session.add(obj)
        await self.session.flush()
        return obj

    async def create_many(self, rows: Sequence[Mapping[str, object]]) -> list[ModelT]:
        """One flush: SQLAlchemy batches the rows into multi-row INSERTs where it can."""
        objs = [self.model(**row) for row in rows]
        self.session.add_all(objs)
        await self.session.flush()
        return objs

    async def update(self, obj: ModelT, values: Mapping[str, object]) -> ModelT:
        allowed = f.column_names(self.model) - self.managed
        for name, value in values.items():
            attr = f.column(self.model, name, allowed, purpose="update")
            setattr(obj, name, f.coerce(attr, value))
        await self.session.flush()
        return obj

    async def update_many(self, filters: Mapping[str, object], values: Mapping[str, object]) -> int:
        """A single UPDATE; objects already loaded in the session are not refreshed."""
        allowed = f.column_names(self.model) - self.managed
        clean = {
            name: f.coerce(f.column(self.model, name, allowed, purpose="update"), value)
            for name, value in values.items()
        }
        if issubclass(self.model, VersionedMixin):
            clean["version"] = self.model.version + 1
        stmt = (
            update(self.model)
            .where(*self.visible(), *f.where(self.model, filters, self._filterable()))
            .values(clean)
            .execution_options(synchronize_session=False)
        )
        result = await self.session.execute(stmt)
        return int(getattr(result, "rowcount", 0))

    async def delete(self, obj: ModelT) -> None:
        """Remove the row (children go with it where the foreign key cascades)."""
        await self.session.delete(obj)
        await self.session.flush()

    async def get_or_create(
        self, defaults: Mapping[str, object] | None = None, **keys: object
    ) -> tuple[ModelT, bool]:
        """Race-safe: exactly one of many concurrent callers creates the row.

        The INSERT yields to a concurrent one on the unique index (how depends on the
        database: see `dialect.insert_or_none`); the losers then read the winner's row
        with a locking read, which sees it committed whatever the isolation level.
        `keys` must be exactly the columns of a unique constraint. A row that breaks
        another unique constraint is that constraint's error (a `Conflict` from the unit
        of work), never taken for the existing row.
        """
        values = {**(defaults or {}), **keys}
        stmt = select(self.model).where(*f.where(self.model, keys, f.column_names(self.model)))
        for _ in range(_GET_OR_CREATE_ROUNDS):
            created = await insert_or_none(self.session, self.model, values, list(keys))
            if created is not None:
                return created, True
            existing = await self.get_one_or_none(stmt.with_for_update(read=True))
            if existing is not None:
                return existing, False
            # The row that was in the way is gone again (deleted, or its insert rolled back).
        raise Conflict("a record with these values keeps appearing and disappearing; try again")

    # Last in the class body: once defined, `list` names this method, not the builtin.
    async def list(
        self,
        *,
        filters: Mapping[str, object] | None = None,
        order_by: Sequence[str] = (),
        offset: int = 0,
        limit: int | None = None,
        options: Sequence[ExecutableOption] = (),
    ) -> list[ModelT]:
        stmt = self.filter(self.select(), filters or {}).options(*options)
        stmt = self.order(stmt, order_by).order_by(self._id)
        rows = await self.session.scalars(stmt.offset(offset).limit(limit))
        return list(rows.all())
