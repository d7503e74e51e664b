"""The two hand-written ORM apps the service is held against (issue 17, targets 1 and 2).

Both answer every endpoint the benchmark loads (get, the offset page with its total,
the cursor page, 20 parents with their live children, create) with the same JSON as
the rendered service: its models, its read and create schemas, its cursor format
(signed with the same secret), the same rows in the same order. bench/layers.py checks
that, request by request, before it measures them.

- `lean_app`: the leanest FastAPI + SQLAlchemy ORM code a person could write by hand.
  Every statement is built once, at start-up, with bound parameters; reads run on a
  session in autocommit (no BEGIN, no COMMIT); a create is one unit of work (BEGIN,
  INSERT ... RETURNING, COMMIT); no dependency, no middleware, no repository layer.
  What is left is what FastAPI, pydantic and the ORM cost: target 1 says the template
  may add at most 10% to it.
- `usual_app`: the same endpoints written the way the popular FastAPI templates write
  them (the comments name which template each choice mirrors). A `yield` dependency
  opens the session and commits in `finally`, the pool pre-pings every checkout,
  statements are built per request, every insert is refreshed, the data access object
  is a class dependency with a plain `__init__` (which FastAPI calls in its thread
  pool). Target 2 says the template must cost at most 0.6x of it on a get and 0.5x on
  a create.

Both get their own engine with the same pool as every other app in the layers table
(40, no overflow), so that the pool's size is not what the comparison measures: the
templates keep SQLAlchemy's default of 5 + 10 overflow, whose overflow connections are
closed when they come back to a pool that already holds 5 idle ones, and opened again.
"""

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from floor_app import Cursors  # the service's cursor format, written by hand
from pydantic import BaseModel
from sqlalchemy import bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import selectinload

BASE = "/api/v1/projects"
MAX_PAGE_SIZE = 100  # the service's default MAX_PAGE_SIZE
POOL = {"pool_size": 40, "max_overflow": 0}  # as every app in the layers table


@dataclass(frozen=True)
class Models:
    """What both apps take from the rendered service: its mapped classes and schemas."""

    project: Any  # the Project model
    task: Any  # the Task model
    read: type[BaseModel]  # ProjectRead
    with_tasks: type[BaseModel]  # ProjectWithTasks
    create: type[BaseModel]  # ProjectCreate
    offset_page: Any  # the generic OffsetPage: same page bodies as the service
    cursor_page: Any  # the generic CursorPage


Size = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
PageNumber = Annotated[int, Query(ge=1, le=1_000_000)]
CursorText = Annotated[str | None, Query(max_length=512)]


def bad_cursor() -> HTTPException:
    return HTTPException(422, "cursor is malformed or was not issued by this service")


def lean_lifespan(
    url: str, sessions: dict[str, async_sessionmaker[AsyncSession]]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The leanest apps' engine, for their lifespan: `sessions["read"]` and `["write"]`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engine = create_async_engine(url, **POOL)
        # One pool; reads switch its connections to autocommit (a client-side flag for
        # asyncpg: no statement is sent), writes get transactions.
        autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        sessions["read"] = async_sessionmaker(autocommit, expire_on_commit=False)
        sessions["write"] = async_sessionmaker(engine, expire_on_commit=False)
        try:
            yield
        finally:
            await engine.dispose()

    return lifespan


def lean_app(models: Models, url: str, secret: str) -> FastAPI:
    """FastAPI over an AsyncSession with the ORM, as lean as hand-written code gets."""
    Project, Task = models.project, models.task
    live = Project.deleted_at.is_(None)
    order = (Project.created_at, Project.id)
    # Every statement once, at start-up: building a select and its cache key per request
    # costs more than the query on a get.
    by_id = select(Project).where(Project.id == bindparam("id"), live)
    count_live = select(func.count()).select_from(Project).where(live)
    offset_page = (
        select(Project)
        .where(live)
        .order_by(*order)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    first_page = select(Project).where(live).order_by(*order).limit(bindparam("limit"))
    position = tuple_(
        bindparam("at", type_=Project.created_at.type), bindparam("key", type_=Project.id.type)
    )
    next_page = (
        select(Project)
        .where(live, tuple_(*order) > position)
        .order_by(*order)
        .limit(bindparam("limit"))
    )
    with_tasks_page = offset_page.options(
        selectinload(Project.tasks.and_(Task.deleted_at.is_(None)))
    )
    cursors = Cursors(secret)
    sessions: dict[str, async_sessionmaker[AsyncSession]] = {}
    app = FastAPI(title="fastapi_orm", lifespan=lean_lifespan(url, sessions))

    @app.get(BASE, response_model=models.offset_page[models.read])
    async def list_projects(size: Size = 20, page: PageNumber = 1) -> object:
        async with sessions["read"]() as session:
            total = await session.scalar(count_live)
            params = {"limit": size, "offset": (page - 1) * size}
            items = (await session.scalars(offset_page, params)).all()
        return {"items": items, "total": total, "page": page, "size": size}

    @app.get(f"{BASE}/cursor", response_model=models.cursor_page[models.read])
    async def scroll_projects(size: Size = 20, cursor: CursorText = None) -> object:
        async with sessions["read"]() as session:
            if cursor is None:
                rows = (await session.scalars(first_page, {"limit": size + 1})).all()
            else:
                after = cursors.decode(cursor)
                if after is None:
                    raise bad_cursor()
                params = {"limit": size + 1, "at": after[0], "key": after[1]}
                rows = (await session.scalars(next_page, params)).all()
        next_cursor = None
        if len(rows) > size:
            rows = rows[:size]
            next_cursor = cursors.encode(rows[-1].created_at, rows[-1].id)
        return {"items": rows, "next_cursor": next_cursor, "size": size}

    @app.get(f"{BASE}/with-tasks", response_model=models.offset_page[models.with_tasks])
    async def list_with_tasks(size: Size = 20, page: PageNumber = 1) -> object:
        async with sessions["read"]() as session:
            total = await session.scalar(count_live)
            params = {"limit": size, "offset": (page - 1) * size}
            items = (await session.scalars(with_tasks_page, params)).all()
        return {"items": items, "total": total, "page": page, "size": size}

    @app.post(BASE, response_model=models.read, status_code=201)
    async def create_project(data: models.create) -> object:
        async with sessions["write"]() as session:
            project = Project(**data.model_dump())
            session.add(project)
            await session.commit()  # the mapper's eager defaults: INSERT ... RETURNING
        return project

    @app.get(f"{BASE}/{{project_id}}", response_model=models.read)
    async def get_project(project_id: uuid.UUID) -> object:
        async with sessions["read"]() as session:
            project = (await session.scalars(by_id, {"id": project_id})).one_or_none()
        if project is None:
            raise HTTPException(404, f"project {project_id} was not found")
        return project

    return app


def lean_app_with_dependency(models: Models, url: str) -> FastAPI:
    """`lean_app`'s get and create, each given its sessions by a FastAPI dependency.

    The same statements, sessions and JSON; the one difference is the dependency, the
    way every FastAPI service hands a route its session. What it adds over `lean_app` is
    what FastAPI's dependency injection costs per request, which the service pays too.
    """
    Project = models.project
    by_id = select(Project).where(Project.id == bindparam("id"), Project.deleted_at.is_(None))
    sessions: dict[str, async_sessionmaker[AsyncSession]] = {}

    async def read_sessions() -> async_sessionmaker[AsyncSession]:
        return sessions["read"]

    async def write_sessions() -> async_sessionmaker[AsyncSession]:
        return sessions["write"]

    Reads = Annotated[async_sessionmaker[AsyncSession], Depends(read_sessions)]
    Writes = Annotated[async_sessionmaker[AsyncSession], Depends(write_sessions)]
    app = FastAPI(title="fastapi_orm_dependency", lifespan=lean_lifespan(url, sessions))

    @app.post(BASE, response_model=models.read, status_code=201)
    async def create_project(data: models.create, maker: Writes) -> object:
        async with maker() as session:
            project = Project(**data.model_dump())
            session.add(project)
            await session.commit()
        return project

    @app.get(f"{BASE}/{{project_id}}", response_model=models.read)
    async def get_project(project_id: uuid.UUID, maker: Reads) -> object:
        async with maker() as session:
            project = (await session.scalars(by_id, {"id": project_id})).one_or_none()
        if project is None:
            raise HTTPException(404, f"project {project_id} was not found")
        return project

    return app


def usual_app(models: Models, url: str, secret: str) -> FastAPI:
    """The same endpoints in the style of the popular FastAPI templates."""
    Project, Task = models.project, models.task
    cursors = Cursors(secret)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # s3rius/FastAPI-template (web/lifespan.py, `_setup_db`): the engine and an
        # `async_sessionmaker(engine, expire_on_commit=False)` kept on `app.state`.
        # pool_pre_ping=True: full-stack-fastapi-template's db/session.py from 2019 (its
        # fix for errors after a database restart) until its move to SQLModel in 2023.
        engine = create_async_engine(url, pool_pre_ping=True, **POOL)
        app.state.db_engine = engine
        app.state.db_session_factory = async_sessionmaker(engine, expire_on_commit=False)
        try:
            yield
        finally:
            await engine.dispose()

    async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
        # s3rius/FastAPI-template (db/dependencies.py): a `yield` dependency that opens
        # the session and commits in `finally`, whatever the request did: every read
        # runs in a transaction (BEGIN ... COMMIT) on a pre-pinged connection.
        session: AsyncSession = request.app.state.db_session_factory()
        try:
            yield session
        finally:
            await session.commit()
            await session.close()

    class ProjectDAO:
        """s3rius/FastAPI-template (db/dao/dummy_dao.py): a data access class taken as
        `Depends()`. Its `__init__` is a plain function, so FastAPI runs it in its thread
        pool on every request (a sync-style dependency, as these templates write them)."""

        def __init__(self, session: Annotated[AsyncSession, Depends(get_db_session)]) -> None:
            self.session = session

        # Statements built per request, as in both templates' routes and DAOs.
        async def get(self, project_id: uuid.UUID) -> Any:
            result = await self.session.execute(
                select(Project).where(Project.id == project_id, Project.deleted_at.is_(None))
            )
            return result.scalars().first()

        async def count(self) -> int:
            # full-stack-fastapi-template (api/routes/items.py, read_items): a count
            # statement, then the page, each built in the route.
            statement = (
                select(func.count()).select_from(Project).where(Project.deleted_at.is_(None))
            )
            return int((await self.session.execute(statement)).scalar_one())

        async def page(self, limit: int, offset: int, *, tasks: bool = False) -> list[Any]:
            statement = (
                select(Project)
                .where(Project.deleted_at.is_(None))
                .order_by(Project.created_at, Project.id)
                .limit(limit)
                .offset(offset)
            )
            if tasks:
                live_tasks = Project.tasks.and_(Task.deleted_at.is_(None))
                statement = statement.options(selectinload(live_tasks))
            return list((await self.session.execute(statement)).scalars().all())

        async def after(self, position: tuple[Any, Any] | None, limit: int) -> list[Any]:
            statement = select(Project).where(Project.deleted_at.is_(None))
            if position is not None:
                statement = statement.where(
                    tuple_(Project.created_at, Project.id) > tuple_(*position)
                )
            statement = statement.order_by(Project.created_at, Project.id).limit(limit)
            return list((await self.session.execute(statement)).scalars().all())

        async def create(self, data: BaseModel) -> Any:
            # full-stack-fastapi-template (crud.py, create_item): add, commit, refresh.
            project = Project(**data.model_dump())
            self.session.add(project)
            await self.session.commit()
            await self.session.refresh(project)
            return project

    # full-stack-fastapi-template (api/deps.py): `Annotated[..., Depends(...)]` aliases.
    DAO = Annotated[ProjectDAO, Depends()]
    app = FastAPI(title="usual", lifespan=lifespan)
    Read, WithTasks = models.read, models.with_tasks

    @app.get(BASE, response_model=models.offset_page[Read])
    async def read_projects(dao: DAO, size: Size = 20, page: PageNumber = 1) -> Any:
        count = await dao.count()
        items = await dao.page(size, (page - 1) * size)
        # full-stack-fastapi-template: each row validated into its public model, the page
        # built as a model, and FastAPI validates the returned model once more.
        return models.offset_page[Read](
            items=[Read.model_validate(item) for item in items], total=count, page=page, size=size
        )

    @app.get(f"{BASE}/cursor", response_model=models.cursor_page[Read])
    async def scroll_projects(dao: DAO, size: Size = 20, cursor: CursorText = None) -> Any:
        position = None
        if cursor is not None:
            position = cursors.decode(cursor)
            if position is None:
                raise bad_cursor()
        items = await dao.after(position, size + 1)
        next_cursor = None
        if len(items) > size:
            items = items[:size]
            next_cursor = cursors.encode(items[-1].created_at, items[-1].id)
        return models.cursor_page[Read](
            items=[Read.model_validate(item) for item in items], next_cursor=next_cursor, size=size
        )

    @app.get(f"{BASE}/with-tasks", response_model=models.offset_page[WithTasks])
    async def read_projects_with_tasks(dao: DAO, size: Size = 20, page: PageNumber = 1) -> Any:
        count = await dao.count()
        items = await dao.page(size, (page - 1) * size, tasks=True)
        return models.offset_page[WithTasks](
            items=[WithTasks.model_validate(item) for item in items],
            total=count,
            page=page,
            size=size,
        )

    @app.post(BASE, response_model=Read, status_code=201)
    async def create_project(data: models.create, dao: DAO) -> Any:
        return await dao.create(data)

    @app.get(f"{BASE}/{{project_id}}", response_model=Read)
    async def read_project(project_id: uuid.UUID, dao: DAO) -> Any:
        project = await dao.get(project_id)
        if not project:
            raise HTTPException(status_code=404, detail="Project not found")
        return project

    return app
