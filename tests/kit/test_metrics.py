"""/metrics after real traffic on the real database: each figure moves as the traffic did."""

import asyncio
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client.parser import text_string_to_metric_families
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.errors import NotFound
from service.kit.http.dependencies import ReadSessionDep, WriteSessionDep
from service.settings import Settings
from sqlalchemy import URL, event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import service_app
from .databases import drop_connections, scratch_database

COUNT = "http_request_duration_seconds_count"
ITEM = "/test/items/{item_id}"


class Scrape:
    """One scrape of /metrics: `scrape(name, label=value)` is a sample's value (0 if absent)."""

    def __init__(self, body: str) -> None:
        self.samples = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body)
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def scrape(http: AsyncClient) -> Scrape:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


@unit_of_work
async def write_something(session: WriteSession) -> None:
    if session.get_bind().dialect.name == "sqlite":
        # A write: it needs the file's write lock.
        await session.execute(text("INSERT INTO lock_probe (x) VALUES (1)"))
    else:
        await session.execute(text("SELECT 1"))


def service(settings: Settings) -> FastAPI:
    """The service's app with test routes that use its real sessions."""
    app = service_app(settings)
    routes = APIRouter(prefix="/test")

    @routes.get("/items/{item_id}")
    async def item(item_id: int, session: ReadSessionDep) -> dict[str, int]:
        await session.execute(text("SELECT 1"))
        if item_id == 0:
            raise NotFound("item", item_id)
        return {"id": item_id}

    @routes.post("/writes")
    async def write(session: WriteSessionDep) -> dict[str, bool]:
        await write_something(session)
        return {"written": True}

    app.include_router(routes)
    return app


@asynccontextmanager
async def running(settings: Settings) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    app = service(settings)
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as http,
    ):
        yield app, http


@pytest.fixture(scope="module")
async def metered(settings: Settings) -> AsyncIterator[tuple[FastAPI, AsyncClient]]:
    async with running(settings) as (app, http):
        yield app, http


@contextmanager
def statements_on(engine: AsyncEngine) -> Iterator[list[str]]:
    sent: list[str] = []

    def note(*args: Any) -> None:
        sent.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", note)
    try:
        yield sent
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", note)


async def test_requests_are_counted_by_route_template_and_status_class(
    metered: tuple[FastAPI, AsyncClient],
) -> None:
    app, http = metered
    before = await scrape(http)
    with statements_on(app.state.db.read_engine) as sent:
        for n in (1, 2, 3):
            assert (await http.get(f"/test/items/{n}")).status_code == 200
        for _ in range(2):
            assert (await http.get("/test/items/0")).status_code == 404
    assert (await http.get("/test/nowhere/7")).status_code == 404
    after = await scrape(http)

    def moved(name: str, **labels: str) -> float:
        return after(name, **labels) - before(name, **labels)

    assert moved(COUNT, method="GET", route=ITEM, status="2xx") == 3
    assert moved(COUNT, method="GET", route=ITEM, status="4xx") == 2
    assert moved(COUNT, method="GET", route="unmatched", status="4xx") == 1
    assert moved("http_problems_total", type="not-found", status="404") == 2
    assert moved("http_problems_total", type="about:blank", status="404") == 1
    # Raw paths never become labels: one series per route template.
    assert not [key for key in after.samples if any("/test/items/1" in v for _, v in key[1])]
    # Five requests, five checkouts of the read pool, and every statement they sent timed.
    assert moved("db_pool_checkout_wait_seconds_count", pool="read") == 5
    assert moved("db_statement_duration_seconds_count", pool="read") == len(sent) >= 5
    # The scrape itself is the one request in flight.
    assert after("http_requests_in_flight") == 1


async def test_a_held_connection_shows_in_the_pool_gauges(
    metered: tuple[FastAPI, AsyncClient], settings: Settings
) -> None:
    app, http = metered
    before = await scrape(http)
    async with app.state.db.read_session() as session:
        await session.execute(text("SELECT 1"))
        holding = await scrape(http)
    after = await scrape(http)
    name = "db_pool_checked_out"
    assert holding(name, pool="read") == before(name, pool="read") + 1
    assert after(name, pool="read") == before(name, pool="read")
    assert holding("db_pool_size", pool="read") >= settings.db_pool_size


GAUGES = ("db_pool_size", "db_pool_checked_out", "db_pool_idle", "db_pool_overflow")


async def test_the_pool_gauges_are_each_pools_state_when_scraped(
    metered: tuple[FastAPI, AsyncClient], settings: Settings
) -> None:
    """A second app's read pool (2 connections, 1 more on overflow) seen by the first's
    scrapes: in use, idle and overflow as they are at each scrape, and gone with its app."""
    _, http = metered
    small = settings.model_copy(update={"db_pool_size": 2, "db_max_overflow": 1})

    before = await scrape(http)

    def read_pool(scraped: Scrape) -> dict[str, float]:
        """The read pools' gauges, less what they were before the second app started."""
        return {name: scraped(name, pool="read") - before(name, pool="read") for name in GAUGES}

    async with running(small) as (other, _):
        db = other.state.db
        async with db.read_session() as one, db.read_session() as two, db.read_session() as three:
            for session in (one, two, three):
                await session.execute(text("SELECT 1"))
            holding = read_pool(await scrape(http))
        returned = read_pool(await scrape(http))
    stopped = read_pool(await scrape(http))
    assert holding == {
        "db_pool_size": 2,
        "db_pool_checked_out": 3,
        "db_pool_idle": 0,
        "db_pool_overflow": 1,
    }
    # The connection beyond the pool's size is closed as it comes back.
    assert returned == {
        "db_pool_size": 2,
        "db_pool_checked_out": 0,
        "db_pool_idle": 2,
        "db_pool_overflow": 0,
    }
    assert stopped == dict.fromkeys(GAUGES, 0)


async def test_a_caller_waiting_for_a_connection_is_counted_and_timed(settings: Settings) -> None:
    one = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0})
    async with running(one) as (app, http):
        db = app.state.db
        before = await scrape(http)

        async def second_reader() -> None:
            async with db.read_session() as session:
                await session.execute(text("SELECT 1"))

        async with db.read_session() as holder:
            await holder.execute(text("SELECT 1"))
            waiter = asyncio.create_task(second_reader())
            await asyncio.sleep(0.3)
            waiting = await scrape(http)
        await waiter
        after = await scrape(http)
    name = "db_pool_waiting"
    assert waiting(name, pool="read") == before(name, pool="read") + 1
    assert after(name, pool="read") == before(name, pool="read")
    waits = "db_pool_checkout_wait_seconds"
    assert after(f"{waits}_count", pool="read") - before(f"{waits}_count", pool="read") == 2
    assert after(f"{waits}_sum", pool="read") - before(f"{waits}_sum", pool="read") >= 0.25


@pytest.fixture
async def own_database(settings: Settings) -> AsyncIterator[Settings]:
    async with scratch_database("metrics") as url:
        unmigrated = settings.alembic_config.with_name("none")  # no schema to check
        yield settings.model_copy(update={"database_url": url, "alembic_config": unmigrated})


class Recorded(logging.Handler):
    """The messages a logger emits while attached."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.mark.servers
async def test_retries_are_counted_by_kind(own_database: Settings) -> None:
    """A connection the server ended: the read runs again, and so does the unit of work;
    each run again is counted once, by kind."""
    url: URL = own_database.database_url
    sessions = logging.getLogger("service.kit.db.session")
    recorded = Recorded()
    async with running(own_database) as (_, http):
        assert (await http.get("/test/items/1")).status_code == 200
        assert (await http.post("/test/writes")).status_code == 200
        before = await scrape(http)
        sessions.addHandler(recorded)
        try:
            await drop_connections(url)
            assert (await http.get("/test/items/1")).status_code == 200
            await drop_connections(url)
            assert (await http.post("/test/writes")).status_code == 200
        finally:
            sessions.removeHandler(recorded)
        after = await scrape(http)
    messages = recorded.messages
    ran_again = {
        "read": sum("reading again" in message for message in messages),
        "write": sum(message.startswith("retrying a unit of work") for message in messages),
    }
    if not own_database.db_behind_pgbouncer:
        # The service's own connection was the one that ended: both ran again.
        assert ran_again == {"read": 1, "write": 1}, messages
    # Behind PgBouncer the connection that ended was PgBouncer's; whether the service's
    # next statement meets it depends on whether PgBouncer noticed first. Either way,
    # what ran again is what is counted.
    retries = "db_retries_total"
    for session in ("read", "write"):
        labels = {"kind": "lost_connection", "session": session}
        counted = after(retries, **labels) - before(retries, **labels)
        assert counted == ran_again[session], (session, messages)


class UnlockOnRetry(logging.Handler):
    """Ends the other writer's transaction once the unit of work says it runs again."""

    def __init__(self, other: sqlite3.Connection) -> None:
        super().__init__()
        self.other = other

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("retrying a unit of work"):
            self.other.rollback()


@pytest.mark.sqlite
async def test_a_locked_file_is_retried_and_counted(own_database: Settings) -> None:
    """A unit of work that finds the file locked by another writer runs again."""
    path = str(own_database.database_url.database)
    impatient = own_database.model_copy(update={"db_busy_timeout": 0.1})
    async with running(impatient) as (_, http):
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("CREATE TABLE lock_probe (x INTEGER)")
        before = await scrape(http)
        other.execute("BEGIN IMMEDIATE")  # the write lock, held by another connection
        units_of_work = logging.getLogger("service.kit.db.session")
        unlock = UnlockOnRetry(other)
        units_of_work.addHandler(unlock)
        try:
            assert (await http.post("/test/writes")).status_code == 200
        finally:
            units_of_work.removeHandler(unlock)
            other.close()
        after = await scrape(http)
    labels = {"kind": "deadlock_or_serialization", "session": "write"}
    assert after("db_retries_total", **labels) - before("db_retries_total", **labels) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_metrics_can_be_turned_off_or_moved_to_a_port_of_their_own(
    settings: Settings,
) -> None:
    async with running(settings.model_copy(update={"metrics_enabled": False})) as (_, http):
        assert (await http.get("/metrics")).status_code == 404
    port = free_port()
    async with running(settings.model_copy(update={"metrics_port": port})) as (_, http):
        assert (await http.get("/test/items/1")).status_code == 200
        assert (await http.get("/metrics")).status_code == 404
        async with httpx.AsyncClient() as outside:
            response = await outside.get(f"http://127.0.0.1:{port}/metrics")
        assert response.status_code == 200
        assert Scrape(response.text)(COUNT, method="GET", route=ITEM, status="2xx") >= 1
    with pytest.raises(httpx.ConnectError):  # closed with the app
        async with httpx.AsyncClient() as outside:
            await outside.get(f"http://127.0.0.1:{port}/metrics")
