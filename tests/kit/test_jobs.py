"""Background jobs (kit/jobs/): enqueued as a statement of the unit of work on
PostgreSQL, so a job exists if and only if its write committed; refused, with the
reason, where there is no queue (MariaDB, SQLite) and outside a unit of work."""

import sys
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.errors import Conflict
from service.kit.extras import JOBS_MODULES, MissingPackages
from service.kit.jobs import enqueue, once
from service.kit.jobs.schema import schema_drift
from service.kit.observability.logging import request_id_var
from service.main import create_app
from service.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .databases import BACKENDS

# Settings of the deployment the suite may run in (behind PgBouncer), which a URL of
# another backend must not inherit.
DEPLOYMENT = ("DB_BEHIND_PGBOUNCER", "DATABASE_DIRECT_URL")


def unique(label: str) -> str:
    """A job name of this test alone: the queue's tables outlive each test."""
    return f"{label}_{uuid.uuid4().hex[:10]}"


async def jobs_named(engine: AsyncEngine, name: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT id, status, attempts, dedupe_key, headers FROM pgqueuer "
                "WHERE entrypoint = :name ORDER BY id"
            ),
            {"name": name},
        )
        return [dict(row) for row in rows.mappings()]


async def test_a_job_enqueued_outside_a_unit_of_work_is_refused(
    committing_sessions: async_sessionmaker[WriteSession],
) -> None:
    """A job written where nothing commits would be lost, or commit with whatever
    the session did next: refused on every backend, before anything is sent."""
    async with committing_sessions() as session:
        with pytest.raises(RuntimeError, match="outside a unit of work"):
            await enqueue(session, "anything", {"a": 1})
        with pytest.raises(RuntimeError, match="outside a unit of work"):
            await once(session, "anything")


@pytest.mark.mysql
@pytest.mark.sqlite
async def test_jobs_are_refused_on_a_database_without_the_queue(
    committing_sessions: async_sessionmaker[WriteSession],
) -> None:
    @unit_of_work
    async def write(session: WriteSession) -> None:
        await enqueue(session, "anything", {"a": 1})

    async with committing_sessions() as session:
        with pytest.raises(RuntimeError, match="background jobs are a PostgreSQL queue"):
            await write(session)


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_jobs_enabled_needs_postgresql(monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    for name in DEPLOYMENT:
        monkeypatch.delenv(name, raising=False)
    url = BACKENDS[backend].plain_url
    if backend == "postgresql":
        assert Settings(database_url=url, jobs_enabled=True).jobs_enabled
        return
    with pytest.raises(ValidationError) as caught:
        Settings(database_url=url, jobs_enabled=True)
    assert "JOBS_ENABLED: background jobs are a PostgreSQL queue" in str(caught.value)


def test_jobs_turned_on_without_the_extra_stop_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for module in JOBS_MODULES:
        monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    for name in DEPLOYMENT:
        monkeypatch.delenv(name, raising=False)
    settings = Settings(database_url=BACKENDS["postgresql"].plain_url)
    with pytest.raises(MissingPackages) as caught:
        create_app(settings.model_copy(update={"jobs_enabled": True}))
    message = str(caught.value)
    assert "\n" not in message, message
    assert "JOBS_ENABLED is on" in message and "uv sync --extra jobs" in message


@pytest.mark.postgresql
async def test_a_unit_of_work_that_rolls_back_leaves_no_job(
    committing_sessions: async_sessionmaker[WriteSession], engine: AsyncEngine
) -> None:
    """The enqueue is the unit of work's first statement: it still rolls back with it
    (a raw connection's enqueue would have committed on its own)."""
    name = unique("rolled_back")
    enqueued: list[int | None] = []

    @unit_of_work
    async def write(session: WriteSession) -> None:
        enqueued.append(await enqueue(session, name, {"n": 1}))
        raise Conflict("the write this job follows failed")

    async with committing_sessions() as session:
        with pytest.raises(Conflict):
            await write(session)
    assert enqueued and enqueued[0] is not None  # it was written, then rolled back
    assert await jobs_named(engine, name) == []


@pytest.mark.postgresql
async def test_a_unit_of_work_that_runs_again_enqueues_once(
    committing_sessions: async_sessionmaker[WriteSession], engine: AsyncEngine
) -> None:
    """Two serialization failures (raised by the server) after the enqueue: the unit of
    work runs three times, and the one job is the committed attempt's."""
    name = unique("retried")
    enqueued: list[int | None] = []

    @unit_of_work
    async def write(session: WriteSession) -> None:
        enqueued.append(await enqueue(session, name, {"n": 1}))
        if len(enqueued) < 3:
            await session.execute(
                text("DO $$ BEGIN RAISE EXCEPTION 'forced' USING ERRCODE = '40001'; END $$")
            )

    async with committing_sessions() as session:
        await write(session)
    rows = await jobs_named(engine, name)
    assert len(enqueued) == 3
    assert [row["id"] for row in rows] == [enqueued[-1]]


@pytest.mark.postgresql
async def test_a_job_already_queued_under_its_key_is_skipped_and_the_write_stands(
    committing_sessions: async_sessionmaker[WriteSession], engine: AsyncEngine
) -> None:
    name = unique("deduped")
    key = f"{name}:project-1:archived"

    @unit_of_work
    async def write(session: WriteSession, effect: str) -> int | None:
        await once(session, effect)  # the write the job follows
        return await enqueue(session, name, {"n": 1}, dedupe_key=key)

    async with committing_sessions() as session:
        first = await write(session, f"{name}:a")
        second = await write(session, f"{name}:b")
    assert first is not None and second is None
    assert [row["id"] for row in await jobs_named(engine, name)] == [first]
    async with engine.connect() as conn:
        kept = await conn.scalar(
            text("SELECT count(*) FROM job_effects WHERE key LIKE :prefix"),
            {"prefix": f"{name}:%"},
        )
    assert kept == 2


@pytest.mark.postgresql
async def test_the_enqueuing_request_id_goes_with_the_job(
    committing_sessions: async_sessionmaker[WriteSession], engine: AsyncEngine
) -> None:
    name = unique("traced")

    @unit_of_work
    async def write(session: WriteSession) -> None:
        await enqueue(session, name)

    token = request_id_var.set("r-42")
    try:
        async with committing_sessions() as session:
            await write(session)
    finally:
        request_id_var.reset(token)
    [row] = await jobs_named(engine, name)
    assert row["headers"] == {"request_id": "r-42"}


@pytest.mark.postgresql
async def test_the_migrated_schema_is_the_one_pgqueuer_expects(engine: AsyncEngine) -> None:
    """The suite's database went through `alembic upgrade head` (conftest.py): the
    jobs migration's frozen statements leave nothing for the installed pgqueuer to
    change (what `pgq verify` checks), and the kit's own table is there."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        assert await schema_drift(raw.driver_connection) == []
        assert await conn.scalar(text("SELECT to_regclass('job_effects') IS NOT NULL"))
