"""What an API owes a client it cannot trust (docs/security.md): response headers on every
response, 500s included; CORS only for the origins CORS_ORIGINS names; a client address
from X-Forwarded-For, and a request id from X-Request-ID, only when a proxy
TRUSTED_PROXIES names sent it."""

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError
from service.kit.observability.logging import JsonFormatter, RequestIdFilter
from service.main import create_app
from service.settings import Settings
from starlette.types import ASGIApp, Receive, Scope, Send

ALLOWED = "https://app.example.com"
ELSEWHERE = "https://evil.example.net"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


def service(settings: Settings, **update: Any) -> FastAPI:
    """The service's app with `update` to its settings, and test routes that need no
    database; no start-up runs."""
    app = create_app(settings.model_copy(update=update))
    routes = APIRouter(prefix="/test")

    @routes.get("/ok")
    async def ok() -> dict[str, bool]:
        return {"ok": True}

    @routes.post("/items")
    async def create(item: dict[str, int]) -> dict[str, int]:
        return item

    @routes.get("/boom")
    async def boom() -> None:
        raise RuntimeError("internal state")

    @routes.get("/client")
    async def client(request: Request) -> dict[str, str]:
        return {"host": request.client.host if request.client else "-"}

    app.include_router(routes)
    return app


class RaisesOutside:
    """A middleware outside every kit one that fails: its 500 is Starlette's own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/test/outside":
            raise RuntimeError("outside the kit")
        await self.app(scope, receive, send)


def client_of(app: FastAPI) -> AsyncClient:
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    return AsyncClient(transport=transport, base_url="http://test")


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[AsyncClient]:
    app = service(settings)
    app.add_middleware(RaisesOutside)
    async with client_of(app) as client:
        yield client


# Every kind of response: a 200, a 404, a 422, a 500 from a route that raises, and a 500
# from outside the kit's handlers.
RESPONSES = [
    ("GET", "/test/ok", None, 200),
    ("GET", "/test/missing", None, 404),
    ("POST", "/test/items", {"count": "many"}, 422),
    ("GET", "/test/boom", None, 500),
    ("GET", "/test/outside", None, 500),
]


@pytest.mark.parametrize(("method", "path", "body", "status"), RESPONSES)
async def test_every_response_carries_nosniff_and_no_server_banner(
    http: AsyncClient, method: str, path: str, body: Any, status: int
) -> None:
    response = await http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "server" not in response.headers  # uvicorn's own: --no-server-header


@pytest.mark.parametrize(("method", "path", "body", "status"), RESPONSES)
async def test_errors_are_never_cached(
    http: AsyncClient, method: str, path: str, body: Any, status: int
) -> None:
    response = await http.request(method, path, json=body)
    assert response.status_code == status
    cached = response.headers.get("cache-control")
    assert cached == ("no-store" if status >= 400 else None)


@pytest.mark.parametrize(
    "credentials", [{"Authorization": "Bearer a-token"}, {"Cookie": "session=a-session"}]
)
async def test_a_response_to_credentials_is_never_cached(
    http: AsyncClient, credentials: dict[str, str]
) -> None:
    response = await http.get("/test/ok", headers=credentials)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


async def preflight(client: AsyncClient, origin: str) -> Any:
    return await client.options("/test/items", headers={"Origin": origin, **PREFLIGHT})


def cors_headers(response: Any) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


async def test_cors_is_off_by_default(settings: Settings) -> None:
    assert settings.cors_origins == []
    async with client_of(service(settings)) as client:
        answer = await preflight(client, ALLOWED)
        simple = await client.get("/test/ok", headers={"Origin": ALLOWED})
    assert cors_headers(answer) == {} and cors_headers(simple) == {}


@pytest.mark.parametrize("credentials", [False, True])
async def test_cors_answers_the_origins_it_names_and_no_other(
    settings: Settings, credentials: bool
) -> None:
    app = service(settings, cors_origins=[ALLOWED], cors_allow_credentials=credentials)
    async with client_of(app) as client:
        allowed = await preflight(client, ALLOWED)
        elsewhere = await preflight(client, ELSEWHERE)
        simple = await client.get("/test/ok", headers={"Origin": ALLOWED})
        foreign = await client.get("/test/ok", headers={"Origin": ELSEWHERE})
    assert allowed.status_code == 200
    headers = cors_headers(allowed)
    assert headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in headers["access-control-allow-methods"]
    assert "content-type" in headers["access-control-allow-headers"].lower()
    assert ("access-control-allow-credentials" in headers) == credentials
    assert simple.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    # Without Access-Control-Allow-Origin the browser hides the answer from the page.
    assert "access-control-allow-origin" not in cors_headers(elsewhere)
    assert "access-control-allow-origin" not in cors_headers(foreign)


def test_a_wildcard_origin_with_credentials_is_refused(settings: Settings) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(
            database_url=settings.database_url, cors_origins="*", cors_allow_credentials="true"
        )
    (error,) = refused.value.errors()
    assert error["loc"] == ("cors_allow_credentials",)
    assert "CORS_ORIGINS" in error["msg"] and "\n" not in error["msg"]


@pytest.mark.parametrize("origin", ["app.example.com", "https://app.example.com/", "https://*.x"])
def test_an_origin_that_no_browser_sends_is_refused(settings: Settings, origin: str) -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings(database_url=settings.database_url, cors_origins=origin)


def test_origins_and_proxies_are_read_as_comma_separated_text(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORS_ORIGINS", f"{ALLOWED}, http://localhost:3000")
    monkeypatch.setenv("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    read = Settings(database_url=settings.database_url)
    assert read.cors_origins == [ALLOWED, "http://localhost:3000"]
    assert read.trusted_proxies == ["10.0.0.0/8", "127.0.0.1"]


def test_a_trusted_proxy_that_is_not_an_address_is_refused(settings: Settings) -> None:
    with pytest.raises(ValidationError, match="TRUSTED_PROXIES"):
        Settings(database_url=settings.database_url, trusted_proxies="proxy.internal")


class AccessLines(logging.Handler):
    """uvicorn's access lines as the service writes them with LOG_FORMAT=json."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.addFilter(RequestIdFilter())  # as the service's handler stamps its lines
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@contextmanager
def access_log() -> Iterator[list[dict[str, Any]]]:
    """uvicorn's access lines while it lasts (after the app is built: building it hands
    uvicorn's loggers to the service's handler)."""
    logger = logging.getLogger("uvicorn.access")
    handler, level = AccessLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def served(
    app: FastAPI, headers: Mapping[str, str] | Mapping[bytes, bytes]
) -> dict[str, str]:
    """One GET of /test/client over HTTP, from 127.0.0.1, to the app served by uvicorn as
    the Dockerfile starts it (no proxy headers of its own): the app's view of the client,
    and the request id it answered with (`id`)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_config=None,
        proxy_headers=False,
        server_header=False,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            response = await client.get("/test/client", headers=headers)
        assert response.status_code == 200 and "server" not in response.headers
        result: dict[str, str] = response.json()
        return {**result, "id": response.headers["x-request-id"]}
    finally:
        server.should_exit = True
        await serving


FORWARDED = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}


async def test_a_clients_forwarded_for_is_ignored(settings: Settings) -> None:
    assert settings.trusted_proxies == []
    app = service(settings)
    with access_log() as lines:
        seen = await served(app, FORWARDED)
    assert seen["host"] == "127.0.0.1"
    (line,) = lines
    assert line["client"].startswith("127.0.0.1:")


async def test_a_trusted_proxys_forwarded_for_names_the_client(settings: Settings) -> None:
    """The address the trusted proxy saw (the last one it appended), not the first, which
    any client can write."""
    app = service(settings, trusted_proxies=["127.0.0.0/8"])
    with access_log() as lines:
        seen = await served(app, FORWARDED)
    assert seen["host"] == "198.51.100.7"
    (line,) = lines
    assert line["client"].startswith("198.51.100.7:")


# A request id the service made: its process's prefix and a counter.
MADE_ID = re.compile(r"[0-9a-f]{16}-[0-9a-f]+")
SPOOFED = {**FORWARDED, "X-Request-ID": "spoofed-id-1"}


@pytest.mark.parametrize("proxies", [[], ["10.0.0.0/8"]], ids=["none", "others"])
async def test_a_clients_request_id_is_replaced_by_one_the_service_makes(
    settings: Settings, proxies: list[str]
) -> None:
    """Whatever a client writes in X-Request-ID, its response, its access line and every
    log line of its request carry an id the service made, and its own address."""
    app = service(settings, trusted_proxies=proxies)
    with access_log() as lines:
        seen = await served(app, SPOOFED)
    assert seen["host"] == "127.0.0.1"
    assert MADE_ID.fullmatch(seen["id"]), seen
    (line,) = lines
    assert line["request_id"] == seen["id"] and line["client"].startswith("127.0.0.1:")


async def test_a_trusted_proxys_request_id_is_kept(settings: Settings) -> None:
    app = service(settings, trusted_proxies=["127.0.0.0/8"])
    with access_log() as lines:
        seen = await served(app, SPOOFED)
    assert seen == {"host": "198.51.100.7", "id": "spoofed-id-1"}
    (line,) = lines
    assert line["request_id"] == "spoofed-id-1" and line["client"].startswith("198.51.100.7:")


@pytest.mark.parametrize(
    "given",
    [
        "has spaces",
        "tab\there",
        "%0d%0aforged: line",
        "x" * 129,
        "y" * 8000,
        "caf\xe9".encode("latin-1"),
        "",
    ],
    ids=["spaces", "tab", "encoded-newline", "129-chars", "8000-chars", "latin-1", "empty"],
)
async def test_a_trusted_proxys_unsafe_request_id_is_replaced(
    settings: Settings, given: str | bytes
) -> None:
    """Even from a trusted proxy, an id is kept only when it is short and plain (letters,
    digits, `.`, `_`, `-`, at most 128): another gets a made one, never an error, so
    nothing a client wrote reaches a log line unchecked. (A CR or LF cannot arrive at
    all: uvicorn refuses the request with a 400 before the app sees it.)"""
    app = service(settings, trusted_proxies=["127.0.0.0/8"])
    with access_log() as lines:
        sent = {b"X-Request-ID": given} if isinstance(given, bytes) else {"X-Request-ID": given}
        seen = await served(app, sent)
    assert MADE_ID.fullmatch(seen["id"]), seen
    (line,) = lines
    assert line["request_id"] == seen["id"]
