"""Readiness and what the service does when the database is not well: probes that cost
one check a period, outages answered 503 and recovered from by themselves, dropped
connections that cost no request, pools that answer 503 in time, requests abandoned
mid-flight, and a schema judged by the line of history it is on."""

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from httpx import ASGITransport, AsyncClient, Response
from service.kit.db.dialect import one_off_connect_args
from service.kit.migrations.lineage import LINEAGE
from service.kit.migrations.startup import alembic_config, upgrade
from service.kit.observability.logging import request_id_var
from service.settings import Settings
from sqlalchemy import URL, event, text
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.types import Message, Receive, Scope, Send

from . import resource
from .conftest import ALEMBIC_INI, create_tables, service_app
from .databases import cut_off, drop_connections, open_transactions, reconnect, scratch_database

# The routes of the kit's own resource these tests call (resource.py).
PARENTS = f"{resource.ANY.prefix}/parents"


async def test_live_does_no_io(client: AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200 and response.json()["status"] == "ok"


async def test_ready_checks_database_and_schema(client: AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    checks = {"database": "ok", "schema": "ok", "cache": "ok"}
    assert response.json() == {"status": "ok", "checks": checks}


async def test_ready_checks_no_cache_when_none_is_configured(settings: Settings) -> None:
    """Without REDIS_URL the service has no cache (`app.state.cache` is None): readiness
    neither checks one nor names one, whatever the render's answers."""
    app = service_app(settings.model_copy(update={"redis_url": None}))
    async with app.router.lifespan_context(app):
        assert app.state.cache is None
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "schema": "ok"}}


async def test_start_up_puts_what_it_built_out_of_the_collectors_reach(settings: Settings) -> None:
    app = service_app(settings)
    assert any(tracked is app for tracked in gc.get_objects())
    async with app.router.lifespan_context(app):
        assert not any(tracked is app for tracked in gc.get_objects())
        assert gc.get_freeze_count() > 0


async def test_a_flood_of_probes_costs_one_check_per_period(settings: Settings) -> None:
    """However many probes arrive at once, the database sees one readiness check per
    HEALTH_CACHE_SECONDS; every probe gets the same answer, with no internals in it."""
    app = service_app(settings.model_copy(update={"health_cache_seconds": 1.0}))
    async with app.router.lifespan_context(app):
        checks: list[str] = []

        def record(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
            checks.append(statement)

        probe = app.state.db.probe_engine.sync_engine
        event.listen(probe, "before_cursor_execute", record)
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            loop = asyncio.get_running_loop()
            started = loop.time()
            flood = await asyncio.gather(*(client.get("/health/ready") for _ in range(200)))
            elapsed = loop.time() - started
            runs = sum(statement == "SELECT 1" for statement in checks)
            assert 1 <= runs <= int(elapsed / 1.0) + 1, (runs, elapsed)
            assert {r.status_code for r in flood} == {200}
            assert all(r.json() == flood[0].json() for r in flood)
            words = {"ok", "degraded", "unavailable"}
            assert {v for k, v in flood[0].json()["checks"].items() if k != "schema"} <= words
            await asyncio.sleep(1.0)  # the answer is a second old: the next probe checks
            assert (await client.get("/health/ready")).status_code == 200
            assert sum(statement == "SELECT 1" for statement in checks) == runs + 1
        event.remove(probe, "before_cursor_execute", record)


@pytest.fixture
async def own_database() -> AsyncIterator[URL]:
    async with scratch_database("outage") as url:
        yield url


async def _client_for(
    url: URL,
    migrated: bool,
    pool_timeout: float = 2,
    read_pool: int = 30,
    write_pool: int = 10,
    idle_in_transaction_ms: int = 60_000,
) -> AsyncClient:
    if migrated:
        await create_tables(url)
    settings = Settings(
        database_url=url,
        alembic_config=ALEMBIC_INI,
        db_pool_timeout=pool_timeout,
        db_pool_size=read_pool,
        db_write_pool_size=write_pool,
        db_max_overflow=0,
        health_cache_seconds=0,  # each probe here must see the database as it is now
        db_idle_in_transaction_timeout_ms=idle_in_transaction_ms,
    )
    return AsyncClient(transport=ASGITransport(app=service_app(settings)), base_url="http://t")


async def _ready_within(client: AsyncClient, seconds: float) -> bool:
    deadline = asyncio.get_running_loop().time() + seconds
    while (await client.get("/health/ready")).status_code != 200:
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.2)
    return True


@pytest.mark.servers
async def test_outage_gives_503_and_the_service_recovers_by_itself(own_database: URL) -> None:
    client = await _client_for(own_database, migrated=True)
    app = client._transport.app  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app), client:
        assert (await client.get("/health/ready")).status_code == 200
        await cut_off(own_database)
        try:
            ready = await client.get("/health/ready")
            assert ready.status_code == 503
            assert ready.headers["retry-after"]
            checks = {"database": "unavailable", "cache": "ok"}
            assert ready.json() == {"status": "unavailable", "checks": checks}
            listing = await client.get(PARENTS)
            assert listing.status_code == 503
            assert listing.headers["retry-after"] == "5"
            assert listing.json()["type"].endswith("database-unavailable")
            assert str(own_database.database) not in listing.text
        finally:
            await reconnect(own_database)
        # At once when connected directly; behind PgBouncer, once it retries its login.
        assert await _ready_within(client, seconds=30)
        assert (await client.get(PARENTS)).status_code == 200


@pytest.mark.servers
async def test_a_dropped_connection_costs_no_failed_request(own_database: URL) -> None:
    """Pre-ping is off by default: a pooled connection the server ended (restart, failover,
    idle cut-off) fails its first statement, and the request runs again on a new one."""
    client = await _client_for(own_database, migrated=True)
    app = client._transport.app  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app), client:
        assert not app.state.settings.db_pool_pre_ping
        assert (await client.get("/health/ready")).status_code == 200
        requests: list[tuple[str, str, dict[str, str] | None]] = [("GET", "/health/ready", None)]
        created = await client.post(PARENTS, json={"name": "A", "slug": "a"})
        assert created.status_code == 201
        assert (await client.get(PARENTS)).status_code == 200  # a pooled read connection
        requests += [
            ("GET", created.headers["location"], None),  # a read
            ("GET", PARENTS, None),  # an offset page: count and rows
            ("POST", PARENTS, {"name": "B", "slug": "b"}),  # a unit of work
            ("GET", f"{PARENTS}/export", None),  # a stream, a short read per batch
        ]
        for method, path, body in requests:
            before = app.state.db.pool_status()["invalidations"]
            await drop_connections(own_database)
            response = await client.request(method, path, json=body)
            assert response.status_code < 300, (method, path, response.text)
            if path.endswith("/export"):  # the whole stream, not a truncated 200
                slugs = sorted(json.loads(line)["slug"] for line in response.text.split())
                assert slugs == ["a", "b"]
            # Connected directly, the dead connection was met and discarded, not skipped
            # by luck. Behind PgBouncer the connections that ended are PgBouncer's: the
            # service meets one only when PgBouncer hands it out before noticing (its
            # race, either way), and then discards its own as above.
            if not app.state.settings.db_behind_pgbouncer:
                invalidations = app.state.db.pool_status()["invalidations"]
                assert invalidations > before, (method, path)


class _Outcomes(logging.Handler):
    """What the service logged, by the id of the request it logged it for."""

    def __init__(self) -> None:
        super().__init__()
        self.by_request: dict[str, list[str]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.by_request.setdefault(request_id_var.get(), []).append(record.getMessage())


@pytest.mark.servers
async def test_a_load_through_connection_sweeps_loses_no_acknowledged_write(
    own_database: URL,
) -> None:
    """32 clients create, read, list and update while every connection of the database
    is ended three times (a restart, a failover, a proxy dropping its backends).

    What must hold, whatever the machine's speed:

    - Nothing acknowledged is lost: every 201 or 200 a client was given for a write
      reads back afterwards at that version or a later one a client asked for.
    - A failure is only a 503, and only where the service could not have done better:
      the connection was lost while COMMIT was in flight, so nobody knows whether the
      write landed (the service logs that for the request); or a new connection could
      not be opened at all (a sweep can end one mid-handshake), so the request was
      refused before its first statement and wrote nothing: a create refused so is
      not stored. A read, and a write whose connection was lost before COMMIT, changed
      nothing and run again on a new connection, so they succeed.
    - A write answered 503 may have landed or not, but never twice: it is at most at
      the version its client asked for.

    The sweeps follow the clients' progress, not the clock: each waits until the
    clients have completed more requests since the one before, so a slow machine
    stretches the test instead of sweeping an idle pool. The pools are small (8 read and
    4 write connections: the server's connections are shared) and their timeout long: 32
    clients queue for them on a slow machine, and a request that waited its turn out
    would be answered 503 having written nothing, which is load, not the fault this test
    is about (the pool tests are)."""
    client = await _client_for(
        own_database, migrated=True, pool_timeout=60, read_pool=8, write_pool=4
    )
    app = client._transport.app  # type: ignore[attr-defined]
    responses: list[tuple[int, str, str]] = []  # status, method and path, request id
    slugs: dict[str, str] = {}  # request id of a create -> the slug it asked for
    acknowledged: dict[str, int] = {}  # location -> last version a client was told
    attempted: dict[str, int] = {}  # location -> highest version a client asked for
    sweeping = True
    reached, target = asyncio.Event(), 0

    async def call(method: str, url: str, **kwargs: Any) -> Response:
        response = await client.request(method, url, **kwargs)
        path = url if method == "POST" else url.rsplit("/", 1)[0]
        request_id = response.headers["x-request-id"]
        responses.append((response.status_code, f"{method} {path}", request_id))
        if method == "POST":
            slugs[request_id] = kwargs["json"]["slug"]
        if len(responses) >= target:
            reached.set()
        return response

    async def client_loop(n: int) -> None:
        for i in itertools.count():
            if not sweeping:
                return
            body = {"name": f"c{n}", "slug": f"c{n}-{i}"}
            created = await call("POST", PARENTS, json=body)
            if created.status_code != 201:
                continue
            location = created.headers["location"]
            acknowledged[location] = attempted[location] = 1
            await call("GET", location)
            await call("GET", PARENTS, params={"size": 5})
            attempted[location] = 2
            changed = await call("PATCH", location, json={"version": 1, "name": "changed"})
            if changed.status_code == 200:
                acknowledged[location] = changed.json()["version"]

    async def progress(requests: int) -> None:
        nonlocal target
        target = len(responses) + requests
        reached.clear()
        await asyncio.wait_for(reached.wait(), timeout=60)

    outcomes = _Outcomes()
    logging.getLogger("service").addHandler(outcomes)
    try:
        async with app.router.lifespan_context(app), client:
            clients = [asyncio.create_task(client_loop(n)) for n in range(32)]
            try:
                for _ in range(3):
                    await progress(64)
                    await drop_connections(own_database)
                await progress(64)
            finally:
                sweeping = False
                await asyncio.gather(*clients)
            pools = app.state.db.pool_status()
            stored = {loc: (await client.get(loc)).json()["version"] for loc in attempted}
            exported = await client.get(f"{PARENTS}/export")
            stored_slugs = {json.loads(line)["slug"] for line in exported.text.split()}
    finally:
        logging.getLogger("service").removeHandler(outcomes)
    statuses = [status for status, _, _ in responses]
    failed = [(what, outcomes.by_request.get(rid)) for code, what, rid in responses if code >= 500]

    def logged(request_id: str, text: str) -> bool:
        return any(text in line for line in outcomes.by_request.get(request_id, []))

    unavailable = [rid for status, _, rid in responses if status == 503]
    unknown = [rid for rid in unavailable if logged(rid, "during COMMIT")]
    refused = [
        rid
        for rid in unavailable
        if rid not in unknown and logged(rid, "database unavailable: DatabaseUnavailable")
    ]
    assert pools["invalidations"] >= 3, "the sweeps met no connection: nothing was tested"
    assert pools["checked_out"] == 0, "a session kept its connection"
    assert set(statuses) <= {200, 201, 503}, failed
    assert len(unknown) + len(refused) == len(unavailable), failed
    assert not {slugs[rid] for rid in refused if rid in slugs} & stored_slugs
    lost = {loc: v for loc, v in acknowledged.items() if stored[loc] < v}
    assert not lost, f"acknowledged writes lost: {lost}"
    assert all(stored[loc] <= attempted[loc] for loc in stored)
    assert statuses.count(201) >= 32 and statuses.count(200) >= 64, statuses


@pytest.mark.servers
async def test_a_pool_held_up_by_locks_answers_503_in_time_and_recovers(
    own_database: URL,
) -> None:
    """A transaction outside the service holds locks the service's writes need (a
    long migration, a manual fix left open). The write that meets them waits with the
    pool's only write connection; the next write finds the pool empty and is answered
    503 while the locks are still held, not queued behind them. Reads, on their own
    pool, go on. Once the locks are released the waiting write completes and the
    service writes again."""
    client = await _client_for(own_database, migrated=True, pool_timeout=0.5, write_pool=1)
    app = client._transport.app  # type: ignore[attr-defined]
    outside = create_async_engine(own_database, connect_args=one_off_connect_args(own_database))
    async with app.router.lifespan_context(app), client:
        created = await client.post(PARENTS, json={"name": "A", "slug": "a"})
        location = created.headers["location"]
        async with outside.connect() as holder:
            table = resource.ANY.parent.__tablename__
            await holder.execute(text(f"SELECT id FROM {table} FOR UPDATE"))
            waiting = asyncio.create_task(
                client.patch(location, json={"version": 1, "name": "changed"})
            )
            for _ in range(1000):  # until the update has the write connection
                if app.state.db.engine.pool.checkedout():
                    break
                await asyncio.sleep(0.01)
            refused = await client.post(PARENTS, json={"name": "B", "slug": "b"})
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "5"
            assert app.state.db.pool_status()["checkout_timeouts"] == 1
            assert not waiting.done(), "the update did not wait for the lock"
            assert (await client.get(location)).status_code == 200
            await holder.rollback()
        await outside.dispose()
        changed = await waiting
        assert changed.status_code == 200 and changed.json()["version"] == 2, changed.text
        again = await client.post(PARENTS, json={"name": "B", "slug": "b"})
        assert again.status_code == 201, again.text


@pytest.mark.servers
async def test_a_slow_reader_of_the_export_holds_no_transaction(
    own_database: URL, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The export reads in short batches: between them, while a slow client takes its
    time, the service holds no transaction. With the server's idle-in-transaction
    timeout set low, a transaction held across batches would be ended by the server
    (and the connection seen dead); none is open while the reader lingers, none is
    ended, and every row arrives."""
    monkeypatch.setattr(resource, "EXPORT_BATCH", 2)
    # Counted as each batch goes out, well inside the timeout: a transaction held across
    # batches is still open then. Lingering past the timeout, the server would end it.
    timeout_ms, linger = 1000, 1.3  # MariaDB counts this timeout in whole seconds
    client = await _client_for(own_database, migrated=True, idle_in_transaction_ms=timeout_ms)
    app = client._transport.app  # type: ignore[attr-defined]
    lingering: list[int] = []  # transactions open as each part went out

    async def slow_reader(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_slowly(message: Message) -> None:
            if message["type"] == "http.response.body" and message.get("body"):
                lingering.append(await open_transactions(own_database))
                await asyncio.sleep(linger)  # the client's buffer is full: send waits
            await send(message)

        await app(scope, receive, send_slowly)

    transport = ASGITransport(app=slow_reader)
    async with app.router.lifespan_context(app), client:
        for n in range(5):  # three batches: 2, 2 and 1
            made = await client.post(PARENTS, json={"name": "e", "slug": f"e{n}"})
            assert made.status_code == 201
        before = app.state.db.pool_status()["invalidations"]
        async with AsyncClient(transport=transport, base_url="http://t") as reader:
            response = await reader.get(f"{PARENTS}/export")
        after = app.state.db.pool_status()["invalidations"]
    assert response.status_code == 200
    slugs = sorted(json.loads(line)["slug"] for line in response.text.split())
    assert slugs == [f"e{n}" for n in range(5)]
    assert lingering == [0] * 5
    assert after == before, "the server ended a connection the export held"


@pytest.mark.servers
async def test_requests_abandoned_mid_flight_leave_no_transaction_open(
    own_database: URL,
) -> None:
    """Clients that hang up mid-request (timeouts, closed tabs) cancel their request:
    its session is closed and its connection ends no transaction left open."""
    client = await _client_for(own_database, migrated=True)
    app = client._transport.app  # type: ignore[attr-defined]
    async with app.router.lifespan_context(app), client:
        for n in range(200):
            body = {"name": "abandoned", "slug": f"abandoned-{n}"}
            request = asyncio.create_task(client.post(PARENTS, json=body))
            await asyncio.sleep(0.001 * (n % 5))
            request.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await request
        await asyncio.sleep(0.2)
        assert (await client.get(PARENTS)).status_code == 200
        assert await open_transactions(own_database) == 0


async def test_an_exhausted_pool_answers_503_quickly(own_database: URL) -> None:
    await create_tables(own_database)
    settings = Settings(
        database_url=own_database,
        alembic_config=ALEMBIC_INI,
        db_pool_size=1,
        db_write_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout=0.3,
    )
    app = service_app(settings)
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://t") as client,
        app.state.db.engine.connect(),  # each pool's only connection, held
        app.state.db.read_engine.connect(),
    ):
        response = await client.get(PARENTS)
        assert response.status_code == 503
        assert response.headers["retry-after"] == "5"
        assert app.state.db.pool_status()["checkout_timeouts"] == 1
        # A saturated pod is busy, not broken: it stays among the Service's endpoints.
        ready = await client.get("/health/ready")
        assert ready.status_code == 200, ready.text


def _release(tmp_path: Path, name: str, *revisions: tuple[str, str | None]) -> Path:
    """A release of this service: its migrations plus these revisions (revision,
    down_revision), in a copy; returns its alembic.ini."""
    here = tmp_path / name
    here.mkdir()
    shutil.copy(ALEMBIC_INI, here / "alembic.ini")
    shutil.copytree(ALEMBIC_INI.parent / "migrations", here / "migrations")
    for revision, down in revisions:
        (here / "migrations" / "versions" / f"{revision}.py").write_text(
            f'revision = "{revision}"\ndown_revision = {down!r}\n\n\n'
            "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n"
        )
    return here / "alembic.ini"


def _head() -> str | None:
    return ScriptDirectory.from_config(alembic_config(ALEMBIC_INI)).get_current_head()


async def _migrate_by(url: URL, release: Path) -> None:
    """`alembic upgrade head` as that release runs it."""
    config = alembic_config(release)
    config.attributes["configure_logger"] = False
    engine = create_async_engine(url, connect_args=one_off_connect_args(url))
    async with engine.begin() as conn:
        await conn.run_sync(upgrade, config)
    await engine.dispose()


async def _ready_in(url: URL, release: Path) -> Response:
    """Readiness as a pod of that release answers it."""
    client = await _client_for(url, migrated=False)
    app = client._transport.app  # type: ignore[attr-defined]
    app.state.settings = app.state.settings.model_copy(update={"alembic_config": release})
    async with app.router.lifespan_context(app), client:
        return await client.get("/health/ready")


async def test_ready_while_a_newer_release_has_migrated_first(
    own_database: URL, tmp_path: Path
) -> None:
    """Mid-deploy the database is at a revision this code has never seen, on a line of
    history through this code's head (the newer release's migration recorded it): ready."""
    ours = _release(tmp_path, "ours", ("ours", _head()))
    newer = _release(tmp_path, "newer", ("ours", _head()), ("newer", "ours"))
    await _migrate_by(own_database, newer)
    response = await _ready_in(own_database, ours)
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["schema"] == "ahead"


async def test_ready_is_503_on_another_line_of_history(own_database: URL, tmp_path: Path) -> None:
    """The database is at a revision this code has never seen, on a line of history that
    does not pass through this code's head (another branch was deployed): the pod stays
    out of the Service, whose requests would meet a schema its code was not written for."""
    ours = _release(tmp_path, "ours", ("ours", _head()))
    other = _release(tmp_path, "other", ("other", _head()))
    await _migrate_by(own_database, other)
    response = await _ready_in(own_database, ours)
    assert response.status_code == 503, response.text
    assert response.json()["checks"]["schema"] == "branch"


async def test_ready_at_an_unknown_revision_when_no_line_of_history_is_recorded(
    own_database: URL, tmp_path: Path
) -> None:
    """A database last migrated by a release from before the lineage was recorded: a
    revision this code does not know is taken as a newer release's, as it was then."""
    ours = _release(tmp_path, "ours", ("ours", _head()))
    other = _release(tmp_path, "other", ("other", _head()))
    await _migrate_by(own_database, other)
    engine = create_async_engine(own_database, connect_args=one_off_connect_args(own_database))
    async with engine.begin() as conn:
        await conn.run_sync(LINEAGE.drop)
    await engine.dispose()
    response = await _ready_in(own_database, ours)
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["schema"] == "ahead"


async def test_ready_is_503_while_a_newer_release_waits_for_its_migration(
    own_database: URL, tmp_path: Path
) -> None:
    """A pod of the next release started before its migration ran: the database is at a
    revision before this code's head, so the pod stays out of the Service until it has."""
    await _migrate_by(own_database, ALEMBIC_INI)
    response = await _ready_in(own_database, _release(tmp_path, "next", ("next", _head())))
    assert response.status_code == 503, response.text
    assert response.json()["checks"]["schema"] == "behind"
