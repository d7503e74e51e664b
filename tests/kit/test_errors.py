"""Problem details: every error a response of the same shape, documented as sent, and the
values a database refuses answered as the client's mistake."""

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.http.dependencies import WriteSessionDep
from service.kit.http.openapi import complete_openapi, operation_id
from service.kit.http.problems import error_responses
from service.kit.http.routes import App
from service.main import create_app
from service.settings import Settings
from sqlalchemy import (
    BigInteger,
    Column,
    Date,
    Integer,
    MetaData,
    String,
    Table,
    bindparam,
    cast,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from .conftest import service_app
from .databases import BACKEND
from .resource import ANY, SHAPES


async def test_request_ids_are_made_for_a_client(client: AsyncClient) -> None:
    """A client that is no trusted proxy gets the service's own ids, whatever it sends
    (test_http_security.py: a trusted proxy's are kept)."""
    given = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    unsafe = await client.get("/health/live", headers={"X-Request-ID": "bad id\twith spaces"})
    again = await client.get("/health/live")
    made = [r.headers["x-request-id"] for r in (given, unsafe, again)]
    assert all(re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]+", made_id) for made_id in made), made
    assert len(set(made)) == 3


async def test_unknown_routes_and_methods_use_the_problem_format(client: AsyncClient) -> None:
    missing = await client.get("/api/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await client.put("/health/live")
    assert wrong.status_code == 405 and wrong.json()["status"] == 405


# The tags of the kit's own resource routes, one per shape.
RESOURCE_TAGS = set(SHAPES)


def test_openapi_documents_every_error_response(app: FastAPI) -> None:
    schema = app.openapi()
    assert "Problem" in schema["components"]["schemas"]
    documented = 0
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if not RESOURCE_TAGS & set(operation.get("tags", ())):
                continue
            documented += 1
            assert {"422", "503"} <= set(operation["responses"]), (method, path)
            if "{" in path:
                assert "404" in operation["responses"], (method, path)
    assert documented >= 4 * 9, documented


def test_problems_are_documented_as_sent_and_operations_by_name(settings: Settings) -> None:
    """A generated client parses a response by the media type it arrives with, and names
    its methods after the operation ids."""
    router = APIRouter(prefix="/things", tags=["things"])

    @router.post("", responses=error_responses(409))
    async def create_thing(size: int) -> None:  # FastAPI adds a 422 of its own
        return None

    @router.get("/{thing_id}")
    async def get_thing(thing_id: int) -> None:
        return None

    @router.get("/{thing_id}/again", name="get_thing")
    async def get_thing_again(thing_id: int) -> None:
        return None

    app = App(generate_unique_id_function=operation_id)
    complete_openapi(app, settings)
    app.include_router(router)
    document = app.openapi()
    created = document["paths"]["/things"]["post"]
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    assert created["operationId"] == "create_thing"
    assert created["responses"]["409"]["content"] == problem
    assert created["responses"]["422"]["content"] == problem
    assert "HTTPValidationError" not in document["components"]["schemas"]
    again = ("/things/{thing_id}", "/things/{thing_id}/again")
    ids = [document["paths"][path]["get"]["operationId"] for path in again]
    assert len(set(ids)) == 2 and all(id_.startswith("get_thing_things") for id_ in ids), ids


# A key-shaped path segment, for paths that take one: of the kind the path's shape takes.
SAMPLE_KEYS = {"uuid": "0190a000-0000-7000-8000-000000000000", "int": "4611686018427387904"}
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"}


def urls_and_methods(app: FastAPI) -> list[tuple[str, set[str], dict[str, Any]]]:
    """Each documented path, with a key in its segments, its methods and its operations."""
    found = []
    for path, operations in app.openapi()["paths"].items():
        methods = {method.upper() for method in operations}
        key = SAMPLE_KEYS["int" if path.startswith("/int-") else "uuid"]
        found.append((re.sub(r"\{[^}]+\}", key, path), methods, operations))
    return found


async def test_options_and_405_list_every_method_of_the_path(
    app: FastAPI, client: AsyncClient
) -> None:
    for url, methods, _ in urls_and_methods(app):
        allow = ", ".join(sorted(methods | {"OPTIONS"}))
        options = await client.options(url)
        assert (options.status_code, options.headers.get("allow")) == (204, allow), url
        for method in sorted(METHODS - methods):
            refused = await client.request(method, url)
            assert refused.status_code == 405, (method, url)
            assert refused.headers["allow"] == allow, (method, url)
            assert refused.headers["content-type"] == "application/problem+json"


async def test_a_body_that_is_not_json_is_a_400(app: FastAPI, client: AsyncClient) -> None:
    bodies = 0
    for url, _, operations in urls_and_methods(app):
        for method, operation in operations.items():
            # A JSON body that does not parse is the service's 400; other bodies are the
            # route's own to read.
            if "application/json" not in operation.get("requestBody", {}).get("content", {}):
                continue
            bodies += 1
            assert {"400", "413"} <= set(operation["responses"]), (method, url)
            for raw in (b"{not json", b'{"a": 1', b"", b'{"a": "\xff"}', b"\xff\xfe"):
                headers = {"content-type": "application/json"}
                response = await client.request(method, url, content=raw, headers=headers)
                if raw == b"":  # no body at all: the missing fields are named (422)
                    assert response.status_code == 422, (method, url)
                    continue
                assert response.status_code == 400, (method, url, raw, response.text)
                assert response.headers["content-type"] == "application/problem+json"
    assert bodies >= 4 * 3  # each shape's parents' POST and PATCH, and its children's POST


def test_openapi_gives_page_sizes_the_configured_maximum(settings: Settings) -> None:
    for maximum in (settings.max_page_size, 7):
        app = service_app(settings.model_copy(update={"max_page_size": maximum}))
        sizes = [
            parameter["schema"]
            for operations in app.openapi()["paths"].values()
            for operation in operations.values()
            for parameter in operation.get("parameters", [])
            if parameter["name"] == "size" and RESOURCE_TAGS & set(operation.get("tags", ()))
        ]
        assert all(size["maximum"] == maximum and size["minimum"] == 1 for size in sizes)
        assert all("x-maximum-setting" not in size for size in sizes)
        assert len(sizes) >= 4  # each shape's listing


def test_no_parameter_is_documented_as_taking_null(app: FastAPI) -> None:
    """A query string or a header carries text, never JSON's null: a client says "none"
    by leaving an optional parameter out, so its schema must not offer null (a client
    that believed it would send the text "null" and get a 422)."""
    optional = 0
    for _, _, operations in urls_and_methods(app):
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                choices = [schema, *schema.get("anyOf", [])]
                assert all(choice.get("type") != "null" for choice in choices), parameter
                optional += not parameter.get("required", False)
    assert optional >= 4 * 2, optional  # each shape's listing: size and page


# Values a route could hand the database unchecked (the API's types refuse them on a
# route that declares them; a route may not): the column each goes to, and the value.
REFUSABLE: dict[str, tuple[Any, object]] = {
    "int32": (Integer(), 2**31),
    "int64": (BigInteger(), 2**63),
    "too-long": (String(3), "abcd"),
    "nul": (String(10), "a\x00b"),
    "surrogate": (String(10), "\ud800"),
    "huge-text": (String(10), "x" * 100_000),
    "date": (Date(), "2024-02-30"),
}


@pytest.fixture(scope="module")
async def unchecked_app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app with one route more: it stores whatever value it is told to, unchecked."""
    app = create_app(settings)

    @unit_of_work
    async def write(session: WriteSession, kind: str) -> None:
        column_type, value = REFUSABLE[kind]
        table = Table(
            f"unchecked_{kind.replace('-', '_')}",
            MetaData(),
            Column("v", column_type),
            prefixes=["TEMPORARY"],
        )
        await session.run_sync(lambda s: table.create(s.connection(), checkfirst=True))
        # The date goes as text, for the database to read (a date object cannot be wrong).
        stored = cast(bindparam("v", type_=String()), column_type) if kind == "date" else value
        await session.execute(insert(table).values(v=stored), {"v": value})

    @app.post("/unchecked/{kind}", status_code=204)
    async def store(kind: str, session: WriteSessionDep) -> None:
        await write(session, kind)

    async with app.router.lifespan_context(app):
        yield app


@pytest.mark.parametrize("kind", REFUSABLE)
async def test_a_value_the_database_refuses_is_a_422(unchecked_app: FastAPI, kind: str) -> None:
    """The database's refusal of a value is the client's input, never "unavailable"."""
    transport = ASGITransport(app=unchecked_app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(f"/unchecked/{kind}")
    if kind not in BACKEND.refused_values:  # this database stores it
        assert response.status_code == 204, response.text
        return
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"].endswith("/invalid-data") and body["status"] == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert "Retry-After" not in response.headers
    # What was wrong, in the service's words: no statement, table or driver message.
    assert body["detail"].startswith("the database refused a value: "), body
    assert not re.search(r"INSERT|unchecked_|\$1|%s|\(\d{4},", body["detail"]), body


# A deferred trigger on the parents' table: the INSERT succeeds, the COMMIT fails.
FAIL_AT_COMMIT = (
    """
CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.name = 'fail-at-commit' THEN
    RAISE EXCEPTION 'secret internal detail: refused at commit';
  END IF;
  RETURN NEW;
END $$
""",
    f"""
CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON {ANY.parent.__tablename__}
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()
""",
)


@pytest.fixture
async def refused_at_commit(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.begin() as conn:
        for statement in FAIL_AT_COMMIT:
            await conn.exec_driver_sql(statement)
    yield
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TRIGGER refuse_at_commit ON {ANY.parent.__tablename__}"))
        await conn.execute(text("DROP FUNCTION refuse_at_commit()"))


@pytest.mark.postgresql
@pytest.mark.usefixtures("refused_at_commit")
async def test_a_write_whose_commit_fails_is_never_a_2xx(
    committing_client: AsyncClient, engine: AsyncEngine
) -> None:
    parents = f"{ANY.prefix}/parents"
    response = await committing_client.post(
        parents, json={"name": "fail-at-commit", "slug": "fail-at-commit"}
    )
    assert response.status_code == 500
    body = response.json()
    assert body["type"].endswith("internal")
    assert body["detail"].startswith("an internal error")
    for leak in ("secret internal detail", "INSERT INTO", "asyncpg", "Traceback", "postgresql"):
        assert leak not in response.text
    async with engine.connect() as conn:
        stored = await conn.scalar(select(func.count()).where(ANY.parent.slug == "fail-at-commit"))
    assert stored == 0
    ok = await committing_client.post(parents, json={"name": "fine", "slug": "fine"})
    assert ok.status_code == 201
