"""Fixtures of the kit's own tests: one database per run, one rolled-back transaction per test.

The suite runs inside a render (`service`, tests/variants.py's KIT_VARIANTS), with that
render's pytest configuration, on the server DATABASE_URL names (tests/test_kit.py). Its
tables are the kit's own resource (`resource.py`), in every shape a model can take.

Each test runs inside an outer transaction that is rolled back at the end; sessions
join it with `join_transaction_mode="create_savepoint"`, so the code under test can
commit and roll back as it does in production without leaking rows between tests.

A test that needs one backend, or a server, says so with a mark (`postgresql`, `mysql`,
`sqlite`, `servers`); on other backends it is deselected, not skipped.
"""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import service
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from redis.asyncio import Redis
from redis.exceptions import RedisError
from service.kit.db.base import Base
from service.kit.db.dialect import one_off_connect_args
from service.kit.db.engine import build_engine
from service.kit.db.session import ReadSession, WriteSession
from service.kit.http.dependencies import read_session, write_session
from service.kit.migrations.startup import alembic_config, upgrade
from service.main import create_app
from service.settings import Settings
from sqlalchemy import URL, delete, event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)

from .databases import BACKEND, SERVERS, scratch_database
from .resource import SHAPES, Shape, router
from .roles import Roles, database_with_roles

# Spans stay in the process: there is no collector to send them to.
os.environ.setdefault("OTEL_TRACES_EXPORTER", "none")
S = TypeVar("S", bound=ReadSession)
# The render the suite runs in: its migrations, alembic.ini and compose.yaml.
SERVICE_ROOT = Path(service.__file__).resolve().parents[2]
ALEMBIC_INI = SERVICE_ROOT / "alembic.ini"
# This run's own keys on the shared Redis, removed when the run ends; set in the
# environment so that every app a test builds uses it.
CACHE_PREFIX = os.environ["CACHE_KEY_PREFIX"] = f"test-kit-{uuid.uuid4().hex[:12]}"
BACKEND_MARKS = {
    "postgresql": "a test of PostgreSQL alone",
    "mysql": "a test of MariaDB (and MySQL) alone",
    "sqlite": "a test of SQLite alone",
    "servers": "a test of the backends with a server (PostgreSQL, MariaDB)",
}


def pytest_configure(config: pytest.Config) -> None:
    for mark, meaning in BACKEND_MARKS.items():
        config.addinivalue_line("markers", f"{mark}: {meaning}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Leave out the tests of other backends than DATABASE_URL's."""
    ours = {BACKEND.name, *(("servers",) if BACKEND.name in SERVERS else ())}
    kept: list[pytest.Item] = []
    left_out: list[pytest.Item] = []
    for item in items:
        marks = {mark.name for mark in item.iter_markers()} & set(BACKEND_MARKS)
        (kept if not marks or marks & ours else left_out).append(item)
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = kept


@pytest.fixture(params=list(SHAPES.values()), ids=list(SHAPES))
def shape(request: pytest.FixtureRequest) -> Shape:
    """Each shape of model in turn, for a test of what depends on the shape."""
    result: Shape = request.param
    return result


@pytest.fixture(params=[s for s in SHAPES.values() if s.soft], ids=lambda s: s.name)
def soft_shape(request: pytest.FixtureRequest) -> Shape:
    """Each shape whose rows are deleted softly."""
    result: Shape = request.param
    return result


def migrate(connection: Any, revision: str = "head", ini: Path = ALEMBIC_INI) -> None:
    config = alembic_config(ini)
    config.attributes["configure_logger"] = False
    upgrade(connection, config, revision)


def service_app(settings: Settings) -> FastAPI:
    """The render's app, with the kit's own resource routed in every shape."""
    app = create_app(settings)
    for shape in SHAPES.values():
        app.include_router(router(shape))
    return app


async def create_tables(url: URL) -> None:
    engine = create_async_engine(url, connect_args=one_off_connect_args(url))
    async with engine.begin() as conn:
        await conn.run_sync(migrate)  # the render's migrations (a skeleton's: none)
        await conn.run_sync(Base.metadata.create_all)  # the kit's own resource
    await engine.dispose()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[URL]:
    async with scratch_database("run") as url:
        await create_tables(url)
        yield url


@pytest.fixture(scope="session")
async def redis_url() -> AsyncIterator[str]:
    """The Redis the cache uses in tests: REDIS_URL, else 127.0.0.1:6379. Never skipped."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = Redis.from_url(url, socket_timeout=5)
    try:
        await client.ping()
    except (RedisError, OSError) as error:
        pytest.fail(
            f"Redis is not reachable at {url} ({type(error).__name__}), and the cache is "
            "tested on a real one: start it (apt-get install redis-server) or point "
            "REDIS_URL at one",
            pytrace=False,
        )
    yield url
    async for key in client.scan_iter(match=f"{CACHE_PREFIX}*"):
        await client.delete(key)
    await client.aclose()


@pytest.fixture(scope="session")
def settings(database_url: URL, redis_url: str) -> Settings:
    return Settings(
        database_url=database_url,
        environment="test",
        db_pool_size=5,
        db_write_pool_size=5,
        db_max_overflow=5,
        db_connect_attempts=1,
        alembic_config=ALEMBIC_INI,
        redis_url=SecretStr(redis_url),
        cache_key_prefix=CACHE_PREFIX,
        cache_timeout=2.0,  # a loaded test machine is no slow Redis
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    """The service's own engine set-up, with room for the concurrency tests."""
    engine = build_engine(settings.model_copy(update={"db_pool_size": 25, "db_max_overflow": 0}))
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        await transaction.rollback()


def sessions_on(
    connection: AsyncConnection, kind: type[S], *, writing: bool = False
) -> async_sessionmaker[S]:
    """Sessions of `kind` joined to the test's transaction. `writing=True`: as if inside a
    unit of work, which the test's rollback ends (units of work called on them join it)."""
    return async_sessionmaker(
        bind=connection,
        class_=kind,
        join_transaction_mode="create_savepoint",
        expire_on_commit=False,
        autoflush=False,
        info={"unit_of_work_depth": 1} if writing else {},
    )


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[WriteSession]:
    """A write session inside the test's transaction: repositories write through it freely."""
    async with sessions_on(connection, WriteSession, writing=True)() as session:
        yield session


async def delete_every_row(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            await conn.execute(table.delete())


@pytest.fixture
async def committing_sessions(
    engine: AsyncEngine,
) -> AsyncIterator[async_sessionmaker[WriteSession]]:
    """Sessions that really commit, for tests of concurrency; their rows are deleted after."""
    yield async_sessionmaker(engine, class_=WriteSession, expire_on_commit=False, autoflush=False)
    await delete_every_row(engine)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    app = service_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def client(app: FastAPI, connection: AsyncConnection) -> AsyncIterator[AsyncClient]:
    """HTTP to the app; each request's session joins this test's outer transaction."""
    reads, writes = sessions_on(connection, ReadSession), sessions_on(connection, WriteSession)

    async def joined_read() -> AsyncIterator[ReadSession]:
        async with reads() as session:
            yield session

    async def joined_write() -> AsyncIterator[WriteSession]:
        async with writes() as session:
            yield session

    app.dependency_overrides[read_session] = joined_read
    app.dependency_overrides[write_session] = joined_write
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            yield client
    finally:
        app.dependency_overrides.clear()


@pytest.fixture
async def committing_client(app: FastAPI, engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    """The app with its real sessions: requests commit for real; their rows are deleted
    after, and the cache's entries with them."""
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client
    await delete_every_row(engine)
    await app.state.cache.clear()  # the rows went behind the service's back


class StatementCounter:
    def __init__(self) -> None:
        self.statements: list[str] = []

    @property
    def count(self) -> int:
        return len(self.statements)


@pytest.fixture
def count_statements(engine: AsyncEngine) -> Any:
    """`with count_statements() as counter:` records the SQL sent, savepoints excluded."""

    @contextmanager
    def counting() -> Iterator[StatementCounter]:
        counter = StatementCounter()

        def record(*args: Any) -> None:
            statement = str(args[2])
            if not statement.startswith(("BEGIN", "SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO")):
                counter.statements.append(statement)

        event.listen(engine.sync_engine, "before_cursor_execute", record)
        try:
            yield counter
        finally:
            event.remove(engine.sync_engine, "before_cursor_execute", record)

    return counting


@pytest.fixture
async def roles(settings: Settings) -> AsyncIterator[Roles]:
    """A database of its own with an owner and a service role (a server's tests only),
    which an earlier release's single role (the owner here) had migrated: `gadget` exists."""
    async with database_with_roles(settings) as found:
        yield found


@pytest.fixture
async def clean_users(engine: AsyncEngine) -> AsyncIterator[None]:
    """After the test, no row left in the users' tables of auth=password."""
    from .password import TABLES  # the password extra's models: only its tests ask

    yield
    async with engine.begin() as conn:
        for model in TABLES:
            await conn.execute(delete(model))
