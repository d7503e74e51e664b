"""The read-through cache on the real Redis: hits, every write path's drop, the race a
read can lose to a write, single flight, and Redis failing under a running service.

Requests commit for real (`committing_client`); this run's keys carry a prefix of its
own (conftest), emptied after each test with the rows. What a deletion drops depends on
the model's shape (soft or hard): those tests run for each.
"""

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from pydantic import SecretStr
from service.kit.cache.store import Cache
from service.kit.db.keys import AnyKey
from service.kit.db.session import ReadSession, WriteSession, unit_of_work
from service.settings import Settings
from sqlalchemy import event

from .conftest import service_app
from .resource import ANY, Parent, Shape
from .test_metrics import Scrape


def parents(shape: Shape = ANY) -> str:
    return f"{shape.prefix}/parents"


def children(shape: Shape = ANY) -> str:
    return f"{shape.prefix}/children"


async def create_parent(
    client: AsyncClient, name: str = "Before", shape: Shape = ANY
) -> dict[str, Any]:
    body = {"name": name, "slug": f"cache-{uuid.uuid4().hex[:8]}"}
    response = await client.post(parents(shape), json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def create_child(
    client: AsyncClient, parent_id: object, shape: Shape = ANY
) -> dict[str, Any]:
    body = {"title": f"Write {uuid.uuid4().hex[:8]}"}
    response = await client.post(f"{parents(shape)}/{parent_id}/children", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


@contextmanager
def reads_of(app: FastAPI, table: str) -> Iterator[list[str]]:
    """The statements the app's read pool sends that read `table`."""
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if re.search(rf"\bFROM {table}\b", statement):
            statements.append(statement)

    engine = app.state.db.read_engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def cache_of(app: FastAPI) -> Cache:
    cache: Cache = app.state.cache
    return cache


def dead_port() -> int:
    """A local port nothing listens on (connections are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@asynccontextmanager
async def app_with(settings: Settings, **changes: Any) -> AsyncIterator[AsyncClient]:
    """A second app, on the same database, whose settings differ by `changes`; its
    readiness answers are not reused (a test reads the cache's state right after a change)."""
    app = service_app(settings.model_copy(update={"health_cache_seconds": 0, **changes}))
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


async def test_a_get_reads_the_database_once_then_redis(
    app: FastAPI, committing_client: AsyncClient
) -> None:
    parent = await create_parent(committing_client)
    url = f"{parents()}/{parent['id']}"
    counters = cache_of(app).counters
    hits, misses = counters.hits, counters.misses
    with reads_of(app, ANY.parent.__tablename__) as statements:
        first = await committing_client.get(url)
        assert len(statements) == 1
        second = await committing_client.get(url)
        assert len(statements) == 1
    assert first.status_code == second.status_code == 200
    assert first.headers["content-type"] == "application/json"
    assert first.content == second.content and first.json() == parent
    assert (counters.misses - misses, counters.hits - hits) == (1, 1)


async def test_an_update_is_read_back_at_once(committing_client: AsyncClient) -> None:
    parent = await create_parent(committing_client)
    url = f"{parents()}/{parent['id']}"
    assert (await committing_client.get(url)).json()["name"] == "Before"
    patch = await committing_client.patch(url, json={"version": 1, "name": "After"})
    assert patch.status_code == 200, patch.text
    read = (await committing_client.get(url)).json()
    assert (read["name"], read["version"]) == ("After", 2)
    assert read == patch.json()


async def test_a_delete_is_read_back_at_once(committing_client: AsyncClient, shape: Shape) -> None:
    parent = await create_parent(committing_client, shape=shape)
    child = await create_child(committing_client, parent["id"], shape)
    for url in (f"{children(shape)}/{child['id']}", f"{parents(shape)}/{parent['id']}"):
        assert (await committing_client.get(url)).status_code == 200
        assert (await committing_client.delete(url)).status_code == 204
        assert (await committing_client.get(url)).status_code == 404


async def test_deleting_a_parent_drops_its_cached_children(
    committing_client: AsyncClient, shape: Shape
) -> None:
    """Its children go (or hide) with it: their entries are dropped with its own."""
    parent = await create_parent(committing_client, shape=shape)
    made = [await create_child(committing_client, parent["id"], shape) for _ in range(3)]
    for child in made:
        assert (await committing_client.get(f"{children(shape)}/{child['id']}")).status_code == 200
    assert (await committing_client.delete(f"{parents(shape)}/{parent['id']}")).status_code == 204
    for child in made:
        assert (await committing_client.get(f"{children(shape)}/{child['id']}")).status_code == 404


async def test_a_child_cached_while_its_parent_is_deleted_goes_with_it(
    app: FastAPI, committing_client: AsyncClient, shape: Shape
) -> None:
    """The parent's deletion has flushed and waits for its COMMIT; meanwhile a child is
    added to the parent and read into the cache. Once the deletion commits, no read
    returns the child. On PostgreSQL the child's insert does not wait for a soft delete
    (its foreign key check takes a lock that a non-key UPDATE leaves free), so the child
    is stored and cached in between; elsewhere the insert waits for the deletion (a
    DELETE's lock, a lock on MariaDB, the one writer on SQLite), with the same outcome."""
    parent = await create_parent(committing_client, shape=shape)
    flushed, resume = asyncio.Event(), asyncio.Event()

    @unit_of_work
    async def delete_then_wait(session: WriteSession, id: AnyKey) -> None:
        await shape.parent_service.delete(session, id)
        flushed.set()
        await resume.wait()

    async def add_and_read() -> str | None:
        body = {"title": "added meanwhile"}
        created = await committing_client.post(
            f"{parents(shape)}/{parent['id']}/children", json=body
        )
        if created.status_code == 404:  # the deletion committed first
            return None
        if created.status_code == 409:
            # Its insert waited for the deletion's lock, then found the parent gone.
            assert created.json()["detail"] == "the parent does not exist"
            return None
        assert created.status_code == 201, created.text
        url = f"{children(shape)}/{created.json()['id']}"
        read = await committing_client.get(url)
        assert read.status_code in (200, 404), read.text
        return url

    async with app.state.db.write_session() as session:
        key = shape.key_of(parent["id"])
        deleter = asyncio.ensure_future(delete_then_wait(session, key))
        await flushed.wait()
        adder = asyncio.create_task(add_and_read())
        if shape.soft and app.state.db.engine.dialect.name == "postgresql":
            await adder  # stored, and cached live, while the deletion is uncommitted
        resume.set()
        await deleter
    url = await adder
    if url is not None:
        for _ in range(2):  # the read after the commit, then whatever it stored
            assert (await committing_client.get(url)).status_code == 404


async def test_a_restore_is_read_back_at_once(
    committing_client: AsyncClient, soft_shape: Shape
) -> None:
    parent = await create_parent(committing_client, shape=soft_shape)
    child = await create_child(committing_client, parent["id"], soft_shape)
    child_url = f"{children(soft_shape)}/{child['id']}"
    parent_url = f"{parents(soft_shape)}/{parent['id']}"
    assert (await committing_client.delete(child_url)).status_code == 204
    assert (await committing_client.get(child_url)).status_code == 404
    restored = await committing_client.post(f"{child_url}/restore")
    assert restored.status_code == 200
    assert (await committing_client.get(child_url)).json() == restored.json()
    # The child cached again, then hidden by its parent's deletion and back with its restore.
    assert (await committing_client.delete(parent_url)).status_code == 204
    assert (await committing_client.get(child_url)).status_code == 404
    assert (await committing_client.post(f"{parent_url}/restore")).status_code == 200
    assert (await committing_client.get(child_url)).json() == restored.json()


@unit_of_work
async def reprioritize(session: WriteSession, parent_id: AnyKey, priority: int) -> int:
    return await ANY.children(session).update_many({"parent_id": parent_id}, {"priority": priority})


async def test_a_bulk_update_is_read_back_at_once(
    app: FastAPI, committing_client: AsyncClient
) -> None:
    """`update_many` is one UPDATE statement: the rows its WHERE matched are dropped."""
    parent = await create_parent(committing_client)
    made = [await create_child(committing_client, parent["id"]) for _ in range(2)]
    for child in made:
        assert (await committing_client.get(f"{children()}/{child['id']}")).json()["priority"] == 0
    async with app.state.db.write_session() as session:
        assert await reprioritize(session, ANY.key_of(parent["id"]), 3) == 2
    for child in made:
        read = (await committing_client.get(f"{children()}/{child['id']}")).json()
        assert (read["priority"], read["version"]) == (3, 2)


async def test_a_read_that_raced_a_write_cannot_put_the_old_row_back(
    app: FastAPI, committing_client: AsyncClient
) -> None:
    """The reader is paused between its database read and its store: the write commits
    and drops the entry in between, and the old row is refused."""
    parent = await create_parent(committing_client)
    url, read_done, resume = f"{parents()}/{parent['id']}", asyncio.Event(), asyncio.Event()
    counters = cache_of(app).counters
    refused = counters.fills_refused
    service = ANY.parent_service

    async def get_then_pause(session: ReadSession, id: AnyKey) -> Parent:
        row = await service.get(session, id)
        read_done.set()
        await resume.wait()
        return row

    assert service.cached is not None
    async with app.state.db.read_session() as session:
        key = ANY.key_of(parent["id"])
        reader = asyncio.create_task(service.cached.read(session, key, get_then_pause))
        await read_done.wait()
        patch = await committing_client.patch(url, json={"version": 1, "name": "After"})
        assert patch.status_code == 200
        resume.set()
        assert json.loads(await reader)["name"] == "Before"  # it read before the commit
    assert counters.fills_refused == refused + 1
    for _ in range(2):  # the miss after the write, then the entry it stored
        assert (await committing_client.get(url)).json()["name"] == "After"


async def test_concurrent_misses_run_one_query(
    app: FastAPI, committing_client: AsyncClient
) -> None:
    parent = await create_parent(committing_client)
    url = f"{parents()}/{parent['id']}"
    with reads_of(app, ANY.parent.__tablename__) as statements:
        responses = await asyncio.gather(*(committing_client.get(url) for _ in range(20)))
        assert len(statements) == 1
        # Under load a hot key stays in Redis: no request reads the database.
        more = await asyncio.gather(*(committing_client.get(url) for _ in range(50)))
        assert len(statements) == 1
    assert {(r.status_code, r.content) for r in responses + more} == {(200, responses[0].content)}


async def test_concurrent_misses_on_a_missing_row_share_its_404(
    app: FastAPI, committing_client: AsyncClient
) -> None:
    parent = await create_parent(committing_client)
    url = f"{parents()}/{parent['id']}"
    assert (await committing_client.delete(url)).status_code == 204
    with reads_of(app, ANY.parent.__tablename__) as statements:
        responses = await asyncio.gather(*(committing_client.get(url) for _ in range(10)))
        assert len(statements) == 1
    assert {r.status_code for r in responses} == {404}


class RedisProxy:
    """A TCP relay in front of the real Redis, which the test can stop and start again:
    stopped, it refuses connections and has cut every open one, as a Redis that went
    down would."""

    def __init__(self, redis_url: str) -> None:
        self.target = urlsplit(redis_url)
        self.port = dead_port()
        self.connections: list[asyncio.StreamWriter] = []
        self.server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.target.path}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.connections:
            writer.close()
        await self.server.wait_closed()
        self.connections.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, port = self.target.hostname or "127.0.0.1", self.target.port or 6379
        upstream_reader, upstream = await asyncio.open_connection(host, port)
        self.connections += [writer, upstream]

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except OSError:
                pass
            finally:
                sink.close()

        await asyncio.gather(pump(reader, upstream), pump(upstream_reader, writer))


async def test_redis_stopped_mid_run_fails_no_request(
    settings: Settings, redis_url: str, committing_client: AsyncClient
) -> None:
    proxy = RedisProxy(redis_url)
    await proxy.start()
    changes = {"redis_url": SecretStr(proxy.url), "cache_retry_seconds": 0.05}
    async with app_with(settings, **changes) as client:
        cache = cache_of(client._transport.app)  # type: ignore[attr-defined]
        parent = await create_parent(client)
        url = f"{parents()}/{parent['id']}"
        assert (await client.get(url)).status_code == 200
        assert (await client.get(url)).json() == parent
        assert cache.counters.hits == 1

        # Redis goes away: every request is served, and readiness stays ready.
        await proxy.stop()
        errors = cache.counters.errors
        patch = await client.patch(url, json={"version": 1, "name": "After"})
        assert patch.status_code == 200
        assert cache.counters.invalidation_errors == 1
        for _ in range(3):
            assert (await client.get(url)).json()["name"] == "After"
        assert cache.counters.errors > errors
        ready = await client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["cache"] == "degraded"

        # Back: the drop that failed goes through before the old entry can be read.
        await proxy.start()
        await asyncio.sleep(0.1)  # past CACHE_RETRY_SECONDS
        assert (await client.get(url)).json()["name"] == "After"
        assert (await client.get("/health/ready")).json()["checks"]["cache"] == "ok"
        assert cache.counters.invalidations >= 1
    await proxy.stop()


async def test_without_redis_every_route_is_served(
    settings: Settings, committing_client: AsyncClient
) -> None:
    nowhere = SecretStr(f"redis://127.0.0.1:{dead_port()}/0")
    async with app_with(settings, redis_url=nowhere) as client:
        parent = await create_parent(client)
        url = f"{parents()}/{parent['id']}"
        assert (await client.get(url)).json() == parent
        assert (await client.patch(url, json={"version": 1, "name": "B"})).status_code == 200
        assert (await client.get(url)).json()["name"] == "B"
        assert (await client.delete(url)).status_code == 204
        assert (await client.get(url)).status_code == 404
        ready = await client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["cache"] == "degraded"
        errors = cache_of(client._transport.app).counters.errors  # type: ignore[attr-defined]
        metrics = Scrape((await client.get("/metrics")).text)
        assert errors >= 1 and metrics("cache_events_total", event="errors") >= errors


async def test_a_redis_that_never_answers_costs_a_timeout_not_a_request(
    settings: Settings, committing_client: AsyncClient
) -> None:
    """A server that accepts connections and never replies: each command times out."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()  # everything the client sends, until it hangs up; no reply

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with app_with(
            settings, redis_url=SecretStr(f"redis://127.0.0.1:{port}/0"), cache_timeout=0.2
        ) as client:
            parent = await create_parent(client)
            assert (await client.get(f"{parents()}/{parent['id']}")).json() == parent
            ready = await client.get("/health/ready")
            assert ready.status_code == 200 and ready.json()["checks"]["cache"] == "degraded"
            cache = cache_of(client._transport.app)  # type: ignore[attr-defined]
            assert cache.counters.errors >= 1 and accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
