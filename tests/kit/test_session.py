"""The session layer's promises: reads cannot write, writes commit only in a unit of work."""

import pytest
from fastapi import APIRouter, BackgroundTasks, FastAPI
from httpx import ASGITransport, AsyncClient
from service.kit.db.engine import DatabaseManager
from service.kit.db.session import ReadSession, WriteSession, unit_of_work
from service.kit.http.dependencies import ReadSessionDep, WriteSessionDep
from service.settings import Settings
from sqlalchemy import insert, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from .conftest import service_app
from .databases import BACKEND


class _Scratch(DeclarativeBase):
    pass


class _Thing(_Scratch):
    __tablename__ = "thing_never_created"
    id: Mapped[int] = mapped_column(primary_key=True)


@unit_of_work
async def _touch(session: WriteSession) -> int:
    return int((await session.execute(text("SELECT 1"))).scalar_one())


async def test_read_sessions_refuse_orm_writes(app: FastAPI) -> None:
    db: DatabaseManager = app.state.db
    async with db.read_session() as session:
        with pytest.raises(RuntimeError, match="read session"):
            await session.execute(insert(_Thing).values(id=1))
        session.add(_Thing(id=1))
        with pytest.raises(RuntimeError, match="read session"):
            await session.flush()


async def test_the_database_refuses_writes_on_a_read_session(app: FastAPI) -> None:
    """However a write is spelled, the read session's connection cannot make it."""
    db: DatabaseManager = app.state.db
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TABLE read_only_probe (id INTEGER)"))
        await conn.execute(text("INSERT INTO read_only_probe (id) VALUES (1)"))
    try:
        for statement in (
            "INSERT INTO read_only_probe (id) VALUES (2)",
            "UPDATE read_only_probe SET id = 3",
            "DELETE FROM read_only_probe",
        ):
            async with db.read_session() as session:
                with pytest.raises(DBAPIError) as refused:
                    await session.execute(text(statement))
            assert BACKEND.read_only_refusal in str(refused.value.orig).lower(), statement
        async with db.write_session() as session:
            rows = (await session.execute(text("SELECT id FROM read_only_probe"))).all()
        assert [tuple(row) for row in rows] == [(1,)]
    finally:
        async with db.engine.begin() as conn:
            await conn.execute(text("DROP TABLE read_only_probe"))


async def test_writes_happen_only_inside_a_unit_of_work(app: FastAPI) -> None:
    db: DatabaseManager = app.state.db
    async with db.write_session() as session:
        session.add(_Thing(id=1))
        with pytest.raises(RuntimeError, match="@unit_of_work"):
            await session.flush()
    async with db.write_session() as session:
        with pytest.raises(RuntimeError, match="@unit_of_work"):
            await session.execute(insert(_Thing).values(id=1))


async def test_a_unit_of_work_refuses_a_read_session_and_needs_a_session(app: FastAPI) -> None:
    db: DatabaseManager = app.state.db
    async with db.read_session() as session:
        with pytest.raises(RuntimeError, match="needs a WriteSession"):
            await _touch(session)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="no WriteSession"):
        await _touch(None)  # type: ignore[arg-type]
    async with db.write_session() as session:
        assert await _touch(session) == 1
        assert not session.in_transaction(), "the unit of work committed"


async def test_request_sessions_are_closed_before_the_response(settings: Settings) -> None:
    """Background tasks run once the response is sent: by then every connection is back."""
    app = service_app(settings)
    router = APIRouter()
    seen: list[tuple[str, int, int]] = []

    def record(kind: str) -> None:
        db: DatabaseManager = app.state.db
        pools = db.engine.pool, db.read_engine.pool
        seen.append((kind, *(pool.checkedout() for pool in pools)))  # type: ignore[attr-defined]

    @router.get("/read")
    async def read(session: ReadSessionDep, background: BackgroundTasks) -> dict[str, bool]:
        await session.execute(text("SELECT 1"))
        background.add_task(record, "read")
        return {"read": isinstance(session, ReadSession) and not isinstance(session, WriteSession)}

    @router.post("/write")
    async def write(session: WriteSessionDep, background: BackgroundTasks) -> dict[str, int]:
        background.add_task(record, "write")
        return {"one": await _touch(session)}

    app.include_router(router)
    transport = ASGITransport(app=app)
    async with app.router.lifespan_context(app), AsyncClient(transport=transport) as client:
        assert (await client.get("http://t/read")).json() == {"read": True}
        assert (await client.post("http://t/write")).json() == {"one": 1}
    assert seen == [("read", 0, 0), ("write", 0, 0)]
