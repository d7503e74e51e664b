"""The kit's own resource for its tests: a parent and its children, in every shape a model
can take, written as a service's domain package writes one (models, repositories,
services, schemas, routes).

A shape is a key type and a way of deleting: `uuid-soft`, `uuid-hard`, `int-soft` and
`int-hard`, as a service's `entity.py` chooses for its models. A render holds the code of
every shape, so each backend's run covers them all, with tables of their own:
`parent_uuid_soft` and `child_uuid_soft`, and so on.
"""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Generic, Literal, TypeVar, cast

from fastapi import APIRouter, Request, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from service.kit.cache.entries import Cached
from service.kit.db.base import Base
from service.kit.db.engine import DatabaseManager
from service.kit.db.keys import INT_KEY_TYPE, UUID_KEY_TYPE, AnyKey, IntKey, IntKeyValue, UUIDKey
from service.kit.db.mixins import SoftDelete, TimestampMixin, VersionedMixin
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.db.types import Timestamp
from service.kit.http.dependencies import ReadSessionDep, WriteSessionDep
from service.kit.http.pagination import OffsetPage, PageNumber, PageSize
from service.kit.http.problems import error_responses
from service.kit.http.schemas import (
    EntityRead,
    Omittable,
    SoftDeletedRead,
    StorableDatetime,
    StorableStr,
    Version,
)
from service.kit.repository.resource import Repository, Service
from sqlalchemy import CheckConstraint, ForeignKey, Select, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, declared_attr, mapped_column, relationship
from sqlalchemy.types import TypeEngine

K = TypeVar("K")
STATUSES = ("todo", "doing", "done")
# How many parents the export reads per short read session (tests lower it).
EXPORT_BATCH = 500


class Parent(TimestampMixin, VersionedMixin, Base):
    """A parent of every shape: a shape adds its key and, when soft, `SoftDelete`."""

    __abstract__ = True
    shape: ClassVar[str]  # "uuid_soft": names its tables and classes

    if TYPE_CHECKING:  # from the shape's mixins
        id: Mapped[Any]
        deleted_at: Mapped[datetime | None]
        is_deleted: bool

    name: Mapped[str] = mapped_column(String(200))
    slug: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return f"parent_{cls.shape}"

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            UniqueConstraint("slug", info={"message": "a parent with this slug already exists"}),
        )

    @declared_attr
    def children(cls) -> Mapped[list["Child"]]:
        child = cls.__name__.removesuffix("Parent") + "Child"
        # lazy="raise": a forgotten eager load fails here, not as MissingGreenlet in production.
        return relationship(
            child,
            back_populates="parent",
            lazy="raise",
            passive_deletes=True,
            order_by=f"{child}.created_at",
        )


class Child(TimestampMixin, VersionedMixin, Base):
    """A parent's child, deleted with it (its foreign key cascades)."""

    __abstract__ = True
    shape: ClassVar[str]
    key_type: ClassVar[TypeEngine[Any]]

    if TYPE_CHECKING:
        id: Mapped[Any]
        deleted_at: Mapped[datetime | None]
        is_deleted: bool

    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="todo", server_default="todo")
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)

    @declared_attr.directive
    def __tablename__(cls) -> str:
        return f"child_{cls.shape}"

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        return (
            UniqueConstraint(
                "parent_id",
                "title",
                info={"message": "this parent already has a child with this title"},
            ),
            CheckConstraint(
                "priority BETWEEN 0 AND 5",
                name="priority_range",
                info={"message": "priority must be between 0 and 5"},
            ),
            CheckConstraint(
                "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")",
                name="status",
                info={"message": "status must be one of " + ", ".join(STATUSES)},
            ),
        )

    @declared_attr
    def parent_id(cls) -> Mapped[Any]:
        target = f"parent_{cls.shape}.id"
        message = {"message": "the parent does not exist"}
        return mapped_column(cls.key_type, ForeignKey(target, ondelete="CASCADE", info=message))

    @declared_attr
    def parent(cls) -> Mapped[Parent]:
        return relationship(
            cls.__name__.removesuffix("Child") + "Parent", back_populates="children", lazy="raise"
        )


class UUIDSoftParent(UUIDKey, SoftDelete, Parent):
    shape = "uuid_soft"


class UUIDSoftChild(UUIDKey, SoftDelete, Child):
    shape, key_type = "uuid_soft", UUID_KEY_TYPE


class UUIDHardParent(UUIDKey, Parent):
    shape = "uuid_hard"


class UUIDHardChild(UUIDKey, Child):
    shape, key_type = "uuid_hard", UUID_KEY_TYPE


class IntSoftParent(IntKey, SoftDelete, Parent):
    shape = "int_soft"


class IntSoftChild(IntKey, SoftDelete, Child):
    shape, key_type = "int_soft", INT_KEY_TYPE


class IntHardParent(IntKey, Parent):
    shape = "int_hard"


class IntHardChild(IntKey, Child):
    shape, key_type = "int_hard", INT_KEY_TYPE


# -- repositories -------------------------------------------------------------------


class ParentRepository(Repository[Parent]):
    sortable: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at", "name"})


class ChildRepository(Repository[Child]):
    sortable: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at", "priority"})

    def in_parent(self, parent_id: AnyKey) -> Select[Child]:
        return self.select().where(self.model.parent_id == parent_id)


# -- schemas ------------------------------------------------------------------------

Name = Annotated[StorableStr, Field(min_length=1, max_length=200)]
Slug = Annotated[StorableStr, Field(max_length=100, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")]


class ParentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    slug: Slug
    description: StorableStr = ""


class ParentUpdate(BaseModel):
    """Only the fields sent are changed; `version` is the one the client last read."""

    model_config = ConfigDict(extra="forbid")

    version: Version
    name: Omittable[Name] = None
    description: Omittable[StorableStr] = None


class ChildCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: Name
    priority: int = Field(default=0, ge=0, le=5)
    due_at: StorableDatetime | None = None


class ParentRead(EntityRead[K], Generic[K]):
    name: str
    slug: str
    description: str


class SoftParentRead(SoftDeletedRead[K], Generic[K]):
    name: str
    slug: str
    description: str


class ChildRead(EntityRead[K], Generic[K]):
    parent_id: K
    title: str
    status: str
    priority: int
    due_at: datetime | None


class SoftChildRead(SoftDeletedRead[K], Generic[K]):
    parent_id: K
    title: str
    status: str
    priority: int
    due_at: datetime | None


# -- the shapes ---------------------------------------------------------------------

ShapeName = Literal["uuid-soft", "uuid-hard", "int-soft", "int-hard"]


@dataclass(frozen=True)
class Shape:
    """One shape's models, repositories, services and schemas, and where its routes are."""

    name: ShapeName
    parent: type[Parent]
    child: type[Child]
    parents: type[ParentRepository]
    children: type[ChildRepository]
    parent_service: Service[Parent]
    child_service: Service[Child]
    parent_read: type[BaseModel]
    child_read: type[BaseModel]
    key: Any  # the key's Python type, as routes and schemas take it

    @property
    def soft(self) -> bool:
        return issubclass(self.parent, SoftDelete)

    @property
    def uuid_keys(self) -> bool:
        return issubclass(self.parent, UUIDKey)

    @property
    def prefix(self) -> str:
        """Where its routes are: /uuid-soft/parents, /uuid-soft/children."""
        return f"/{self.name}"

    def key_of(self, value: object) -> Any:
        """A key as its routes read one (text from a URL or JSON)."""
        return TypeAdapter(self.key).validate_python(value)

    def missing_key(self) -> Any:
        """A key no row holds: far above any key MariaDB or SQLite hands out."""
        return uuid.uuid4() if self.uuid_keys else 2**62 + uuid.uuid4().int % 2**40


def _shape(name: ShapeName, parent: type[Parent], child: type[Child]) -> Shape:
    """The shape of `parent` and `child`, read from the mixins they hold."""
    soft = issubclass(parent, SoftDelete)
    key = uuid.UUID if issubclass(parent, UUIDKey) else IntKeyValue
    # The kit's Repository hides, soft-deletes and restores by the model's base.
    parents, children = ParentRepository, ChildRepository
    parent_read = cast(type[BaseModel], (SoftParentRead if soft else ParentRead)[key])
    child_read = cast(type[BaseModel], (SoftChildRead if soft else ChildRead)[key])
    parent_repository = type(f"{parent.__name__}Repository", (parents,), {"model": parent})
    child_repository = type(f"{child.__name__}Repository", (children,), {"model": child})
    # Services as a domain package writes them: a repository, a resource name, and the
    # get by id cached (it reads the database where the app has no cache).
    parent_service: type[Service[Parent]] = type(
        f"{parent.__name__}Service",
        (Service,),
        {"repository": parent_repository, "resource": "parent", "cached": Cached(parent_read)},
    )
    child_service: type[Service[Child]] = type(
        f"{child.__name__}Service",
        (Service,),
        {"repository": child_repository, "resource": "child", "cached": Cached(child_read)},
    )
    return Shape(
        name,
        parent,
        child,
        parent_repository,
        child_repository,
        parent_service(),
        child_service(),
        parent_read,
        child_read,
        key,
    )


SHAPES: dict[ShapeName, Shape] = {
    shape.name: shape
    for shape in (
        _shape("uuid-soft", UUIDSoftParent, UUIDSoftChild),
        _shape("uuid-hard", UUIDHardParent, UUIDHardChild),
        _shape("int-soft", IntSoftParent, IntSoftChild),
        _shape("int-hard", IntHardParent, IntHardChild),
    )
}
# The shape a test uses when the shape does not matter to what it tests.
ANY = SHAPES["uuid-soft"]


# -- units of work ------------------------------------------------------------------


@unit_of_work
async def create_parent(session: WriteSession, shape: Shape, data: ParentCreate) -> Parent:
    return await shape.parents(session).create(**data.model_dump())


@unit_of_work
async def create_child(
    session: WriteSession, shape: Shape, parent_id: AnyKey, data: ChildCreate
) -> Child:
    await shape.parent_service.get(session, parent_id)  # a 404 for a missing parent
    return await shape.children(session).create(parent_id=parent_id, **data.model_dump())


@unit_of_work
async def get_or_create_parent(
    session: WriteSession, shape: Shape, slug: str, name: str
) -> tuple[Parent, bool]:
    return await shape.parents(session).get_or_create({"name": name}, slug=slug)


# -- routes -------------------------------------------------------------------------


def router(shape: Shape) -> APIRouter:
    """The shape's routes, under its prefix: what the HTTP tests call."""
    routes = APIRouter(prefix=shape.prefix, tags=[shape.name], responses=error_responses(422, 503))
    parents, children, key = shape.parent_service, shape.child_service, shape.key

    page_of_parents = OffsetPage[shape.parent_read]  # type: ignore[name-defined]

    @routes.get("/parents", response_model=page_of_parents)
    async def list_parents(session: ReadSessionDep, size: PageSize, page: PageNumber = 1) -> object:
        repo = shape.parents(session)
        return await repo.paginate_offset(repo.select(), page=page, size=size)

    @routes.get("/parents/export", response_class=StreamingResponse)
    async def export_parents(request: Request) -> StreamingResponse:
        db: DatabaseManager = request.app.state.db

        async def lines() -> AsyncIterator[bytes]:
            after = None
            while True:
                # A short read per batch: a slow reader holds no connection between batches.
                async with db.read_session() as session:
                    repo = shape.parents(session)
                    column = shape.parent.created_at
                    batch = await repo.after(repo.select(), column, after, size=EXPORT_BATCH)
                for row in batch:
                    yield shape.parent_read.model_validate(row).model_dump_json().encode() + b"\n"
                if len(batch) < EXPORT_BATCH:
                    return
                after = (batch[-1].created_at, batch[-1].id)

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    @routes.post(
        "/parents",
        response_model=shape.parent_read,
        status_code=status.HTTP_201_CREATED,
        responses=error_responses(409),
    )
    async def create(
        data: ParentCreate, session: WriteSessionDep, request: Request, response: Response
    ) -> object:
        parent = await create_parent(session, shape, data)
        name = f"get_{shape.parent.shape}"
        response.headers["Location"] = request.app.url_path_for(name, parent_id=parent.id)
        return parent

    @routes.get(
        "/parents/{parent_id:key}",
        name=f"get_{shape.parent.shape}",
        response_model=shape.parent_read,
        responses=error_responses(404),
    )
    async def get(
        parent_id: key,  # type: ignore[valid-type]
        session: ReadSessionDep,
    ) -> object:
        return Response(await parents.read(session, parent_id), media_type="application/json")

    @routes.patch(
        "/parents/{parent_id:key}",
        response_model=shape.parent_read,
        responses=error_responses(404, 409),
    )
    async def update(
        parent_id: key,  # type: ignore[valid-type]
        data: ParentUpdate,
        session: WriteSessionDep,
    ) -> object:
        values = data.model_dump(exclude_unset=True, exclude={"version"})
        return await parents.update(session, parent_id, data.version, values)

    @routes.delete(
        "/parents/{parent_id:key}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(404),
    )
    async def delete(
        parent_id: key,  # type: ignore[valid-type]
        session: WriteSessionDep,
    ) -> None:
        await parents.delete(session, parent_id)

    @routes.post(
        "/parents/{parent_id:key}/children",
        response_model=shape.child_read,
        status_code=status.HTTP_201_CREATED,
        responses=error_responses(404, 409),
    )
    async def create_one_child(
        parent_id: key,  # type: ignore[valid-type]
        data: ChildCreate,
        session: WriteSessionDep,
        request: Request,
        response: Response,
    ) -> object:
        child = await create_child(session, shape, parent_id, data)
        name = f"get_{shape.child.shape}"
        response.headers["Location"] = request.app.url_path_for(name, child_id=child.id)
        return child

    @routes.get(
        "/children/{child_id:key}",
        name=f"get_{shape.child.shape}",
        response_model=shape.child_read,
        responses=error_responses(404),
    )
    async def get_child(
        child_id: key,  # type: ignore[valid-type]
        session: ReadSessionDep,
    ) -> object:
        return Response(await children.read(session, child_id), media_type="application/json")

    @routes.delete(
        "/children/{child_id:key}",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=error_responses(404),
    )
    async def delete_child(
        child_id: key,  # type: ignore[valid-type]
        session: WriteSessionDep,
    ) -> None:
        await children.delete(session, child_id)

    if shape.soft:

        @routes.post(
            "/parents/{parent_id:key}/restore",
            response_model=shape.parent_read,
            responses=error_responses(404),
        )
        async def restore(
            parent_id: key,  # type: ignore[valid-type]
            session: WriteSessionDep,
        ) -> object:
            return await parents.restore(session, parent_id)

        @routes.post(
            "/children/{child_id:key}/restore",
            response_model=shape.child_read,
            responses=error_responses(404),
        )
        async def restore_child(
            child_id: key,  # type: ignore[valid-type]
            session: WriteSessionDep,
        ) -> object:
            return await children.restore(session, child_id)

    return routes
