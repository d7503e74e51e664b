"""The hand-written apps the service is held against (issues 17 and 24: the anchors).

Every app answers every endpoint the benchmark loads (get, the offset page with its
total, the cursor page, 20 parents each with its first 20 live children, how many it has
and a cursor to the rest, create) with the same JSON as the rendered service: its
models, its read and create schemas, its cursor format (signed with the same secret),
the same rows in the same order. bench/layers.py checks that, request by request,
before it measures them, and leaves out an app that answers otherwise.

- `lean_app`: the leanest FastAPI + SQLAlchemy ORM code a person could write by hand.
  Every statement is built once, at start-up, with bound parameters; reads run on an
  engine created in autocommit (no BEGIN, no COMMIT), as the service's do; a create is
  one unit of work (BEGIN, INSERT ... RETURNING, COMMIT); no dependency, no middleware,
  no repository layer.
- `lean_features_app`: the same with the service's production features written the most
  direct way (request ids, a body limit, request metrics, a create that returns its key
  from inside its unit of work, `Location` on the 201): issue 24's first target.
- `usual_app`: the same endpoints the way the popular FastAPI templates write them (a
  `yield` dependency that commits in `finally`, statements built per request, every
  insert refreshed, a DAO class dependency run in the thread pool), no pool pre-ping.
- `s3rius_app`, `fullstack_app`, `benavlabs_app`: each in the style of one template's
  request path as it ships (s3rius/FastAPI-template, full-stack-fastapi-template,
  benavlabs/FastAPI-boilerplate with FastCRUD), written for this benchmark, no code
  copied.

Each gets its own engine with the same pool as every other app in the layers table
(40, no overflow), so that the pool's size is not what the comparison measures: the
templates keep SQLAlchemy's default of 5 + 10 overflow, whose overflow connections are
closed when they come back to a pool that already holds 5 idle ones, and opened again.
"""

import contextvars
import importlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from floor_app import Cursors  # the service's cursor format, written by hand
from prometheus_client import CollectorRegistry, Gauge, Histogram
from pydantic import BaseModel
from sqlalchemy import Select, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import aliased
from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE = "/api/v1/projects"
MAX_PAGE_SIZE = 100  # the service's default MAX_PAGE_SIZE
MAX_CHILDREN = 20  # the service's default MAX_CHILDREN_PER_PARENT
POOL = {"pool_size": 40, "max_overflow": 0}  # as every app in the layers table
# The request id, for log lines (the lean app with features logs nothing per request).
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


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


def first_tasks(task_model: Any, ids: Any, size: Any) -> Select[Any]:
    """Each of the projects `ids`' first `size` live tasks, oldest first, and how many live
    tasks it has: one statement for the whole page, as the service bounds a listing."""
    ranked = (
        select(task_model)
        .where(task_model.project_id.in_(ids), task_model.deleted_at.is_(None))
        .add_columns(
            func.row_number()
            .over(
                partition_by=task_model.project_id,
                order_by=(task_model.created_at, task_model.id),
            )
            .label("rank_in_project"),
            func.count().over(partition_by=task_model.project_id).label("in_project"),
        )
        .subquery()
    )
    task = aliased(task_model, ranked)
    return (
        select(task, ranked.c.in_project)
        .where(ranked.c.rank_in_project <= size)
        .order_by(ranked.c.project_id, ranked.c.rank_in_project)
    )


@dataclass(frozen=True, slots=True)
class ProjectTasks:
    """A project (its attributes read through), its first live tasks, how many it has,
    and the cursor that lists the rest: what ProjectWithTasks is read from."""

    project: Any
    tasks: list[Any]
    tasks_total: int
    tasks_next: str | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.project, name)


def with_tasks(projects: Any, rows: Any, cursors: Cursors) -> list[ProjectTasks]:
    """`projects` with the rows of `first_tasks` for them."""
    found: dict[Any, tuple[list[Any], int]] = {}
    for task, total in rows:
        found.setdefault(task.project_id, ([], total))[0].append(task)
    items = []
    for project in projects:
        tasks, total = found.get(project.id, ([], 0))
        after = None
        if len(tasks) < total:
            after = cursors.encode(tasks[-1].created_at, tasks[-1].id)
        items.append(ProjectTasks(project, tasks, total, after))
    return items


def lean_lifespan(
    url: str, sessions: dict[str, async_sessionmaker[AsyncSession]]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The leanest apps' engine, for their lifespan: `sessions["read"]` and `["write"]`."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # As the service sets up its engines: reads on an engine created in autocommit
        # (its connections never switch isolation level at checkout), writes on one
        # with transactions. Switching a pooled connection per checkout instead cost
        # the leanest app about 9% of a get, a handicap the service does not carry.
        reads = create_async_engine(url, isolation_level="AUTOCOMMIT", **POOL)
        writes = create_async_engine(url, **POOL)
        sessions["read"] = async_sessionmaker(reads, expire_on_commit=False)
        sessions["write"] = async_sessionmaker(writes, expire_on_commit=False)
        try:
            yield
        finally:
            await reads.dispose()
            await writes.dispose()

    return lifespan


def lean_app(models: Models, url: str, secret: str, *, features: bool = False) -> FastAPI:
    """FastAPI over an AsyncSession with the ORM, as lean as hand-written code gets
    (with `features`: and the service's production features, see `lean_features_app`)."""
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
    tasks_of = first_tasks(Task, bindparam("ids", expanding=True), bindparam("n"))
    cursors = Cursors(secret)
    sessions: dict[str, async_sessionmaker[AsyncSession]] = {}
    title = "fastapi_orm_features" if features else "fastapi_orm"
    app = FastAPI(title=title, lifespan=lean_lifespan(url, sessions))

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
            projects = (await session.scalars(offset_page, params)).all()
            rows = []
            if projects:
                ids = [project.id for project in projects]
                rows = (await session.execute(tasks_of, {"ids": ids, "n": MAX_CHILDREN})).all()
        items = with_tasks(projects, rows, cursors)
        return {"items": items, "total": total, "page": page, "size": size}

    if features:
        # The service's production features, each written the most direct way: a
        # create that flushes inside its transaction to hand back its key, and says
        # where the new row lives.
        @app.post(BASE, response_model=models.read, status_code=201)
        async def create_project_located(data: models.create, response: Response) -> object:
            async with sessions["write"]() as session, session.begin():
                project = Project(**data.model_dump())
                session.add(project)
                await session.flush()  # INSERT ... RETURNING: the key, inside the unit
            response.headers["Location"] = f"{BASE}/{project.id}"
            return project

    else:

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

    if features:
        add_features(app)
    return app


def lean_features_app(models: Models, url: str, secret: str) -> FastAPI:
    """`lean_app` with the production features the service has, written the most
    direct way (issue 24's target: the service at most 1.10x this app's cost): a
    request id on every response, a body limit, request metrics, and a create that
    returns its key from inside its unit of work with a `Location` header."""
    return lean_app(models, url, secret, features=True)


BODY_LIMIT = 1_048_576  # the service's default MAX_BODY_BYTES


def add_features(app: FastAPI) -> None:
    """Request ids, a body limit and request metrics, as pure ASGI middlewares."""
    registry = CollectorRegistry()  # its own: the service's metrics hold the names
    seconds = Histogram(
        "http_request_duration_seconds",
        "Time to answer a request",
        ("method", "route", "status"),
        registry=registry,
    )
    in_flight = Gauge("http_requests_in_flight", "Requests being answered", registry=registry)
    prefix, numbers = uuid.uuid4().hex[:16], itertools.count(1)

    def request_ids(inner: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return await inner(scope, receive, send)
            sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
            request_id = sent if 0 < len(sent) <= 128 else f"{prefix}-{next(numbers):x}"
            token = request_id_var.set(request_id)

            async def send_with_id(message: Message) -> None:
                if message["type"] == "http.response.start":
                    message["headers"] = [
                        *message.get("headers", []),
                        (b"x-request-id", request_id.encode("latin-1")),
                    ]
                await send(message)

            try:
                await inner(scope, receive, send_with_id)
            finally:
                request_id_var.reset(token)

        return middleware

    def body_limit(inner: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return await inner(scope, receive, send)
            length = int(dict(scope["headers"]).get(b"content-length", b"0")[:18])
            received = 0

            # Raised from `receive`, inside the route, so FastAPI's handler answers 413.
            async def counted() -> Message:
                nonlocal received
                if length > BODY_LIMIT:
                    raise HTTPException(413, "request body too large")
                message = await receive()
                received += len(message.get("body", b""))
                if received > BODY_LIMIT:
                    raise HTTPException(413, "request body too large")
                return message

            await inner(scope, counted, send)

        return middleware

    def metrics(inner: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                return await inner(scope, receive, send)
            status = 500

            async def noted(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            in_flight.inc()
            started = time.perf_counter()
            try:
                await inner(scope, receive, noted)
            finally:
                in_flight.dec()
                route = getattr(scope.get("route"), "path", "unmatched")
                labels = (scope["method"], route, f"{status // 100}xx")
                seconds.labels(*labels).observe(time.perf_counter() - started)

        return middleware

    # Outermost last: metrics see every answer, the request id is on every one.
    app.add_middleware(body_limit)  # type: ignore[arg-type]
    app.add_middleware(request_ids)  # type: ignore[arg-type]
    app.add_middleware(metrics)  # type: ignore[arg-type]


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


def usual_app(models: Models, url: str, secret: str, *, s3rius: bool = False) -> FastAPI:
    """The same endpoints in the style of the popular FastAPI templates.

    With `s3rius`: written in the style of s3rius/FastAPI-template alone (`s3rius_app`).
    """
    Project, Task = models.project, models.task
    cursors = Cursors(secret)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # s3rius/FastAPI-template (web/lifespan.py, `_setup_db`): the engine and an
        # `async_sessionmaker(engine, expire_on_commit=False)` kept on `app.state`. No
        # pool pre-ping: none of the templates this app stands for enables it today.
        engine = create_async_engine(url, **POOL)
        app.state.db_engine = engine
        app.state.db_session_factory = async_sessionmaker(engine, expire_on_commit=False)
        try:
            yield
        finally:
            await engine.dispose()

    async def get_db_session(request: Request) -> AsyncIterator[AsyncSession]:
        # s3rius/FastAPI-template (db/dependencies.py): a `yield` dependency that opens
        # the session and commits in `finally`, whatever the request did: every read
        # runs in a transaction (BEGIN ... COMMIT).
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

        async def page(self, limit: int, offset: int) -> list[Any]:
            statement = (
                select(Project)
                .where(Project.deleted_at.is_(None))
                .order_by(Project.created_at, Project.id)
                .limit(limit)
                .offset(offset)
            )
            return list((await self.session.execute(statement)).scalars().all())

        async def first_tasks(self, projects: list[Any]) -> list[Any]:
            if not projects:
                return []
            ids = [project.id for project in projects]
            statement = first_tasks(Task, ids, MAX_CHILDREN)
            return list((await self.session.execute(statement)).all())

        async def after(self, position: tuple[Any, Any] | None, limit: int) -> list[Any]:
            statement = select(Project).where(Project.deleted_at.is_(None))
            if position is not None:
                statement = statement.where(
                    tuple_(Project.created_at, Project.id) > tuple_(*position)
                )
            statement = statement.order_by(Project.created_at, Project.id).limit(limit)
            return list((await self.session.execute(statement)).scalars().all())

        async def create(self, data: BaseModel) -> Any:
            project = Project(**data.model_dump())
            self.session.add(project)
            if s3rius:
                # s3rius/FastAPI-template (the DAO's create): add and leave the commit to
                # the dependency's `finally`; a flush gives the answer its row.
                await self.session.flush()
                return project
            # full-stack-fastapi-template (crud.py, create_item): add, commit, refresh.
            await self.session.commit()
            await self.session.refresh(project)
            return project

    # full-stack-fastapi-template (api/deps.py): `Annotated[..., Depends(...)]` aliases.
    DAO = Annotated[ProjectDAO, Depends()]
    app = FastAPI(title="s3rius" if s3rius else "usual", lifespan=lifespan)
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
        projects = await dao.page(size, (page - 1) * size)
        items = with_tasks(projects, await dao.first_tasks(projects), cursors)
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


def s3rius_app(models: Models, url: str, secret: str) -> FastAPI:
    """Written in the style of s3rius/FastAPI-template (no code copied): an async
    session from a `yield` dependency that commits in `finally`, a DAO class taken as
    `Depends()`, statements built per request, a create that adds and flushes."""
    return usual_app(models, url, secret, s3rius=True)


def sync_url(url: str) -> str:
    """The benchmark's asyncpg URL for psycopg 3's sync driver."""
    return url.replace("+asyncpg://", "+psycopg://").replace("ssl=disable", "sslmode=disable")


def fullstack_app(models: Models, url: str, secret: str) -> FastAPI:
    """Written in the style of fastapi/full-stack-fastapi-template (no code copied):
    plain `def` routes, which FastAPI runs in its thread pool, a sync engine (psycopg),
    a session per request from a `yield` dependency (as SQLModel's `Session` is used
    there: SQLAlchemy's own here, on the service's models), statements built in the
    route, a count then the page, and a create as add, commit, refresh."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    Project, Task = models.project, models.task
    Read, WithTasks = models.read, models.with_tasks
    cursors = Cursors(secret)
    engines: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        engines["db"] = create_engine(sync_url(url), **POOL)
        try:
            yield
        finally:
            engines.pop("db").dispose()

    def get_db() -> Iterator[Session]:
        with Session(engines["db"]) as session:
            yield session

    SessionDep = Annotated[Session, Depends(get_db)]
    app = FastAPI(title="fullstack", lifespan=lifespan)
    live = Project.deleted_at.is_(None)
    order = (Project.created_at, Project.id)

    def count(session: Session) -> int:
        return int(
            session.execute(select(func.count()).select_from(Project).where(live)).scalar_one()
        )

    @app.get(BASE, response_model=models.offset_page[Read])
    def read_projects(session: SessionDep, size: Size = 20, page: PageNumber = 1) -> Any:
        total = count(session)
        statement = (
            select(Project).where(live).order_by(*order).offset((page - 1) * size).limit(size)
        )
        items = session.execute(statement).scalars().all()
        return models.offset_page[Read](
            items=[Read.model_validate(i) for i in items], total=total, page=page, size=size
        )

    @app.get(f"{BASE}/cursor", response_model=models.cursor_page[Read])
    def scroll_projects(session: SessionDep, size: Size = 20, cursor: CursorText = None) -> Any:
        statement = select(Project).where(live)
        if cursor is not None:
            position = cursors.decode(cursor)
            if position is None:
                raise bad_cursor()
            statement = statement.where(tuple_(*order) > tuple_(*position))
        items = list(session.execute(statement.order_by(*order).limit(size + 1)).scalars().all())
        next_cursor = None
        if len(items) > size:
            items = items[:size]
            next_cursor = cursors.encode(items[-1].created_at, items[-1].id)
        return models.cursor_page[Read](
            items=[Read.model_validate(i) for i in items], next_cursor=next_cursor, size=size
        )

    @app.get(f"{BASE}/with-tasks", response_model=models.offset_page[WithTasks])
    def read_projects_with_tasks(session: SessionDep, size: Size = 20, page: PageNumber = 1) -> Any:
        total = count(session)
        statement = (
            select(Project).where(live).order_by(*order).offset((page - 1) * size).limit(size)
        )
        projects = session.execute(statement).scalars().all()
        rows: list[Any] = []
        if projects:
            ids = [project.id for project in projects]
            rows = list(session.execute(first_tasks(Task, ids, MAX_CHILDREN)).all())
        items = with_tasks(projects, rows, cursors)
        return models.offset_page[WithTasks](
            items=[WithTasks.model_validate(i) for i in items], total=total, page=page, size=size
        )

    @app.post(BASE, response_model=Read, status_code=201)
    def create_project(session: SessionDep, data: models.create) -> Any:
        project = Project(**data.model_dump())
        session.add(project)
        session.commit()
        session.refresh(project)
        return project

    @app.get(f"{BASE}/{{project_id}}", response_model=Read)
    def read_project(session: SessionDep, project_id: uuid.UUID) -> Any:
        project = session.execute(select(Project).where(Project.id == project_id, live)).scalar()
        if not project:
            raise HTTPException(status_code=404, detail="Project not found")
        return project

    return app


def benavlabs_app(models: Models, url: str, secret: str) -> FastAPI:
    """Written in the style of benavlabs/FastAPI-boilerplate (no code copied): its data
    access is FastCRUD, one `FastCRUD(Model)` per model, called from the routes with the
    session of a `yield` dependency (an `async with` session, no commit in the
    dependency: FastCRUD's `create` commits). Rows come back as dicts of the read schema's
    columns; a create is FastCRUD's `create` (add, commit, refresh); a page is
    `get_multi` (the rows and a count). What FastCRUD has no call for is a
    statement run on the same session, as that boilerplate's routes do: the cursor page
    (a `where` on the sort key, through `get_multi`) and each parent's first children."""
    from types import SimpleNamespace

    from fastcrud import FastCRUD

    Project, Task = models.project, models.task
    Read, WithTasks = models.read, models.with_tasks
    cursors = Cursors(secret)
    crud_projects: FastCRUD[Any, Any, Any, Any, Any, Any] = FastCRUD(Project)
    makers: dict[str, async_sessionmaker[AsyncSession]] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The boilerplate's engine and `async_sessionmaker(..., expire_on_commit=False)`;
        # the pool as every app here has it.
        engine = create_async_engine(url, **POOL)
        makers["db"] = async_sessionmaker(engine, expire_on_commit=False)
        try:
            yield
        finally:
            await engine.dispose()

    async def async_get_db() -> AsyncIterator[AsyncSession]:
        async with makers["db"]() as db:
            yield db

    Db = Annotated[AsyncSession, Depends(async_get_db)]
    app = FastAPI(title="benavlabs", lifespan=lifespan)
    order = ["created_at", "id"]

    @app.get(BASE, response_model=models.offset_page[Read])
    async def read_projects(db: Db, size: Size = 20, page: PageNumber = 1) -> Any:
        found = await crud_projects.get_multi(
            db=db,
            offset=(page - 1) * size,
            limit=size,
            schema_to_select=Read,
            sort_columns=order,
            deleted_at=None,
        )
        return {"items": found["data"], "total": found["total_count"], "page": page, "size": size}

    @app.get(f"{BASE}/cursor", response_model=models.cursor_page[Read])
    async def scroll_projects(db: Db, size: Size = 20, cursor: CursorText = None) -> Any:
        where = None
        if cursor is not None:
            position = cursors.decode(cursor)
            if position is None:
                raise bad_cursor()
            where = tuple_(Project.created_at, Project.id) > tuple_(*position)
        found = await crud_projects.get_multi(
            db=db,
            limit=size + 1,
            schema_to_select=Read,
            sort_columns=order,
            return_total_count=False,
            where=where,
            deleted_at=None,
        )
        items = found["data"]
        next_cursor = None
        if len(items) > size:
            items = items[:size]
            next_cursor = cursors.encode(items[-1]["created_at"], items[-1]["id"])
        return {"items": items, "next_cursor": next_cursor, "size": size}

    @app.get(f"{BASE}/with-tasks", response_model=models.offset_page[WithTasks])
    async def read_projects_with_tasks(db: Db, size: Size = 20, page: PageNumber = 1) -> Any:
        found = await crud_projects.get_multi(
            db=db,
            offset=(page - 1) * size,
            limit=size,
            schema_to_select=Read,
            sort_columns=order,
            deleted_at=None,
        )
        projects = [SimpleNamespace(**row) for row in found["data"]]
        rows: list[Any] = []
        if projects:
            ids = [project.id for project in projects]
            rows = list((await db.execute(first_tasks(Task, ids, MAX_CHILDREN))).all())
        items = with_tasks(projects, rows, cursors)
        return {"items": items, "total": found["total_count"], "page": page, "size": size}

    @app.post(BASE, response_model=Read, status_code=201)
    async def write_project(project: models.create, db: Db) -> Any:
        # FastCRUD's create: add, commit, refresh (a SELECT in a transaction of its own),
        # and the row's columns as a dict.
        created = await crud_projects.create(db=db, object=project, schema_to_select=Read)
        if created is None:
            raise HTTPException(status_code=500, detail="Failed to create project")
        return created

    @app.get(f"{BASE}/{{project_id}}", response_model=Read)
    async def read_project(project_id: uuid.UUID, db: Db) -> Any:
        found = await crud_projects.get(
            db=db, id=project_id, deleted_at=None, schema_to_select=Read
        )
        if found is None:
            raise HTTPException(status_code=404, detail="Project not found")
        return found

    return app


def models_of(package: str) -> Models:
    """The rendered service's mapped classes and schemas, wherever its layout keeps them:
    the domain's own modules, and the page types from the kit's public surface (or, in a
    render from before the kit, from where that render kept them)."""
    importlib.import_module(f"{package}.models")  # every mapper, so relationships resolve
    schemas = importlib.import_module(f"{package}.projects.schemas")
    return Models(
        project=importlib.import_module(f"{package}.projects.models").Project,
        task=importlib.import_module(f"{package}.tasks.models").Task,
        read=schemas.ProjectRead,
        with_tasks=schemas.ProjectWithTasks,
        create=schemas.ProjectCreate,
        offset_page=service_name(package, "OffsetPage", PAGE_MODULES),
        cursor_page=service_name(package, "CursorPage", PAGE_MODULES),
    )


# Where a render keeps a name the benchmark needs, first found wins: the kit's public
# surface, then its modules as they are and as they were before the kit.
PAGE_MODULES = ("kit", "kit.http.pagination", "kit.repository.pagination", "api.pagination")
KEY_MODULES = ("kit", "kit.db.uuid7", "kit.db.keys", "db.uuid7", "db.keys")


def service_name(package: str, name: str, modules: tuple[str, ...]) -> Any:
    """`name` from the first of `package`'s `modules` that has it."""
    for module in modules:
        try:
            found = importlib.import_module(f"{package}.{module}")
        except ModuleNotFoundError:
            continue
        if hasattr(found, name):
            return getattr(found, name)
    raise SystemExit(f"bench: no {name} in {package} (looked in {', '.join(modules)})")
