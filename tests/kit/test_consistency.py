"""The consistency token without replicas, on every backend: the header's form, OpenAPI.

With replicas, the template's own full tier proves the routing on a real streaming replica.
"""

import re
from collections.abc import AsyncIterator

import pytest
from fastapi import FastAPI, Request
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError
from service.kit.db.engine import DatabaseManager
from service.kit.http.dependencies import ReadSessionDep, WriteSessionDep
from service.kit.replicas import consistency
from service.kit.replicas.positions import lsn
from service.main import create_app
from service.settings import Settings
from sqlalchemy import text

from .conftest import service_app


def test_replica_urls_are_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db/app")  # replicas are PostgreSQL's
    monkeypatch.setenv("DB_REPLICA_URLS", " postgresql://a/app, postgres://b:5433/app ,")
    urls = Settings().db_replica_urls
    assert [(u.drivername, u.host, u.port) for u in urls] == [
        ("postgresql+asyncpg", "a", None),
        ("postgresql+asyncpg", "b", 5433),
    ]
    monkeypatch.setenv("DB_REPLICA_URLS", "")
    assert Settings().db_replica_urls == []
    monkeypatch.setenv("DB_REPLICA_URLS", "mysql://a/app")
    with pytest.raises(ValidationError, match="every replica is a PostgreSQL URL"):
        Settings()
    monkeypatch.setenv("DB_REPLICA_URLS", "oracle://a/app")
    with pytest.raises(ValidationError, match="unsupported driver"):
        Settings()


def test_a_token_is_a_wal_position() -> None:
    assert lsn("16/B374D848") == 0x16_B374_D848
    assert lsn("0/0") == 0


@pytest.fixture
async def probe_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The service's app without replicas, with a route that reads and one that writes."""
    app = create_app(settings)

    @app.get("/probe")
    async def read(session: ReadSessionDep) -> int:
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    @app.post("/probe", status_code=201)
    async def write(session: WriteSessionDep) -> None:
        await session.commit()

    async with app.router.lifespan_context(app):
        yield app


async def test_without_replicas_a_token_is_ignored_and_none_is_issued(
    probe_app: FastAPI,
) -> None:
    assert type(probe_app.state.db) is DatabaseManager
    transport = ASGITransport(app=probe_app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        written = await client.post("/probe")
        assert written.status_code == 201
        assert "x-consistency-token" not in written.headers
        read = await client.get("/probe", headers={"X-Consistency-Token": "16/B374D848"})
        assert read.status_code == 200 and read.json() == 1


@pytest.mark.parametrize("token", ["not-a-position", "16/", "/1", "123456789/0", "1/2/3"])
async def test_a_malformed_token_is_a_422(probe_app: FastAPI, token: str) -> None:
    transport = ASGITransport(app=probe_app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/probe", headers={"X-Consistency-Token": token})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_openapi_shows_the_header_on_reads_and_writes(probe_app: FastAPI) -> None:
    operations = probe_app.openapi()["paths"]["/probe"]
    parameters = {p["name"]: p["in"] for p in operations["get"]["parameters"]}
    assert parameters == {"X-Consistency-Token": "header"}
    assert "X-Consistency-Token" in operations["post"]["responses"]["201"]["headers"]
    assert "headers" not in operations["get"]["responses"]["200"]


def test_openapi_shows_the_header_on_routes_taken_in_from_routers(settings: Settings) -> None:
    paths = service_app(settings).openapi()["paths"]
    read = paths["/uuid-soft/parents/{parent_id}"]["get"]
    assert "X-Consistency-Token" in {p["name"] for p in read["parameters"]}
    created = paths["/uuid-soft/parents"]["post"]["responses"]["201"]
    assert "X-Consistency-Token" in created["headers"]


async def test_the_middleware_adds_a_recorded_token_signed_and_nothing_else(
    settings: Settings,
) -> None:
    app = FastAPI()
    app.state.settings = settings  # signs with its CURSOR_SECRET
    app.add_middleware(consistency.ConsistencyTokenMiddleware)

    @app.post("/recorded")
    async def recorded(request: Request) -> None:
        consistency.record(request, "0/16B3748")

    @app.post("/not-recorded")
    async def not_recorded() -> None:
        return None

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        token = (await client.post("/recorded")).headers["x-consistency-token"]
        assert token.startswith("0/16B3748.")
        secret = settings.cursor_secret.get_secret_value()
        signer = consistency.TokenSigner(secret, settings.service_name)
        assert signer.position(token) == 0x16B3748
        assert "x-consistency-token" not in (await client.post("/not-recorded")).headers


SECRET = "a-secret-of-at-least-thirty-two-bytes"


def test_a_token_is_its_position_signed_and_only_an_issued_one_is_read() -> None:
    signer = consistency.TokenSigner(SECRET, "service")
    token = signer.sign("16/B374D848")
    position, dot, signature = token.partition(".")
    assert (position, dot) == ("16/B374D848", ".") and signature
    assert re.fullmatch(consistency.PATTERN, token)
    assert signer.position(token) == 0x16_B374_D848
    not_issued = [
        "16/B374D848",  # unsigned, as the previous release issued it
        f"16/B374D849.{signature}",  # another position under this one's signature
        f"{position}.{signature[:-1]}",  # truncated
        f"{position}.{signature[:-1]}{'B' if signature[-1] != 'B' else 'C'}",  # tampered
        consistency.TokenSigner("another-secret-of-at-least-32-bytes", "service").sign(position),
        consistency.TokenSigner(SECRET, "another-service").sign(position),
    ]
    assert [signer.position(t) for t in not_issued] == [None] * len(not_issued)


@pytest.mark.parametrize(
    "token", ["16/B374D848", "16/B374D848.forged-signature", "FFFFFFFF/FFFFFFFF.AAAAAAAAAAAAAAAA"]
)
async def test_a_token_the_service_did_not_issue_is_no_error(
    probe_app: FastAPI, token: str
) -> None:
    """Well-formed but not issued here (or issued by the previous release, unsigned): read
    as no token, so a client holding one across an update keeps reading."""
    transport = ASGITransport(app=probe_app)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/probe", headers={"X-Consistency-Token": token})
    assert response.status_code == 200 and response.json() == 1
