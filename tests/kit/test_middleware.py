"""Request ids on every response and log line; request bodies bounded before they are read,
and in the time they take to arrive; no OpenTelemetry settings read per request unless
the service traces."""

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import StreamingResponse
from httpx import ASGITransport, AsyncClient
from service.kit.http.middleware import body_limit
from service.kit.observability.logging import RequestIdFilter, request_id_var
from service.main import create_app
from service.settings import Settings

CHUNK = 64 * 1024
log = logging.getLogger("tests.routes")


@pytest.fixture(scope="module")
def service(settings: Settings) -> FastAPI:
    """The service's app with a router of test routes: none touches the database. The
    test client (127.0.0.1) is its trusted proxy, so the request ids it sends are kept."""
    app = create_app(settings.model_copy(update={"trusted_proxies": ["127.0.0.1"]}))
    routes = APIRouter(prefix="/test")

    @routes.post("/size")
    async def size(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @routes.post("/json")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    @routes.post("/large")
    @body_limit(4 * settings.max_body_bytes)
    async def large(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @routes.get("/boom")
    async def boom() -> None:
        log.warning("about to fail")
        raise RuntimeError("internal state")

    @routes.get("/boom-midway")
    async def boom_midway() -> StreamingResponse:
        async def lines() -> AsyncIterator[bytes]:
            yield b"first\n"
            raise RuntimeError("midway")

        return StreamingResponse(lines())

    app.include_router(routes)
    return app


@pytest.fixture
async def http(service: FastAPI) -> AsyncIterator[AsyncClient]:
    transport = ASGITransport(app=service, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


class Lines(logging.Handler):
    """The log lines as the service writes them, request id included."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())  # as the service's own handler does
        self.setFormatter(logging.Formatter("[%(request_id)s] %(name)s: %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The service's lines and the test routes' only: the test client logs its own, and
        # asyncio may report a connection an earlier test dropped whenever it is collected.
        if record.name.startswith(("service.", "tests.")):
            self.lines.append(self.format(record))


@pytest.fixture
def log_lines(service: FastAPI) -> Iterator[list[str]]:
    handler = Lines()
    logging.getLogger().addHandler(handler)
    try:
        yield handler.lines
    finally:
        logging.getLogger().removeHandler(handler)


@pytest.mark.parametrize("given", ["boom-1", None])
async def test_an_unhandled_error_keeps_its_request_id(
    http: AsyncClient, log_lines: list[str], given: str | None
) -> None:
    headers = {"X-Request-ID": given} if given else {}
    response = await http.get("/test/boom", headers=headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    request_id = response.headers["x-request-id"]
    assert response.json()["request_id"] == request_id == (given or request_id)
    assert "internal state" not in response.text  # the exception stays in the log
    assert len(log_lines) == 2 and all(f"[{request_id}]" in line for line in log_lines), log_lines
    assert "about to fail" in log_lines[0] and "unhandled error" in log_lines[1]
    assert request_id_var.get() == "-"  # and the id does not outlive the request


async def test_an_error_after_the_response_started_is_logged_with_its_id(
    http: AsyncClient, log_lines: list[str]
) -> None:
    response = await http.get("/test/boom-midway", headers={"X-Request-ID": "midway-1"})
    assert response.headers["x-request-id"] == "midway-1"
    assert any("[midway-1]" in line and "unhandled error" in line for line in log_lines), log_lines


class Body:
    """A request body of `size` bytes sent in chunks, counting the bytes the app pulled."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.size:
            chunk = b" " * min(CHUNK, self.size - self.pulled)
            self.pulled += len(chunk)
            yield chunk


async def send(http: AsyncClient, path: str, body: Body, *, declared: bool) -> Any:
    headers = {"Content-Length": str(body.size)} if declared else {}
    return await http.post(path, content=body, headers=headers)


def assert_too_large(response: Any) -> None:
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.parametrize("path", ["/test/size", "/test/json"])
async def test_a_declared_length_over_the_limit_is_refused_before_any_byte_is_read(
    http: AsyncClient, settings: Settings, path: str
) -> None:
    body = Body(settings.max_body_bytes + 1)
    assert_too_large(await send(http, path, body, declared=True))
    assert body.pulled == 0


@pytest.mark.parametrize("path", ["/test/size", "/test/json"])
async def test_a_chunked_body_is_refused_at_the_first_chunk_past_the_limit(
    http: AsyncClient, settings: Settings, path: str
) -> None:
    body = Body(20 * settings.max_body_bytes)
    assert_too_large(await send(http, path, body, declared=False))
    assert body.pulled <= settings.max_body_bytes + CHUNK


@pytest.mark.parametrize("declared", [True, False])
async def test_a_body_at_the_limit_is_read(
    http: AsyncClient, settings: Settings, declared: bool
) -> None:
    response = await send(http, "/test/size", Body(settings.max_body_bytes), declared=declared)
    assert response.status_code == 200 and response.json() == {"size": settings.max_body_bytes}


async def test_many_large_bodies_at_once_hold_no_more_than_the_limit_each(
    http: AsyncClient, settings: Settings
) -> None:
    bodies = [Body(20 * 2**20) for _ in range(20)]
    responses = await asyncio.gather(*(send(http, "/test/size", b, declared=False) for b in bodies))
    for response in responses:
        assert_too_large(response)
    assert max(body.pulled for body in bodies) <= settings.max_body_bytes + CHUNK


async def test_a_route_may_take_larger_bodies(http: AsyncClient, settings: Settings) -> None:
    size = 3 * settings.max_body_bytes
    for declared in (True, False):
        response = await send(http, "/test/large", Body(size), declared=declared)
        assert response.status_code == 200 and response.json() == {"size": size}
        assert_too_large(await send(http, "/test/large", Body(5 * size), declared=declared))


class SlowBody:
    """A body of `size` bytes, one chunk of a byte every `pause` seconds."""

    def __init__(self, size: int, pause: float) -> None:
        self.size = size
        self.pause = pause

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.size):
            await asyncio.sleep(self.pause)
            yield b" "


@pytest.mark.parametrize("path", ["/test/size", "/test/json"])
async def test_a_body_slower_than_its_deadline_is_a_408_that_closes_the_connection(
    settings: Settings, path: str
) -> None:
    """BODY_READ_TIMEOUT bounds the time from the route's first read to the body's last
    byte (test_slow_clients.py in the template's full tier: over HTTP, on a booted
    service)."""
    app = create_app(settings.model_copy(update={"body_read_timeout": 0.3}))

    @app.post("/test/size")
    async def size(request: Request) -> dict[str, int]:
        return {"size": len(await request.body())}

    @app.post("/test/json")
    async def echo(body: dict[str, Any]) -> dict[str, Any]:
        return body

    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        started = time.monotonic()
        slow = await client.post(
            path, content=SlowBody(100, 0.05), headers={"Content-Length": "100"}
        )
        elapsed = time.monotonic() - started
        quick = await client.post(path, content=SlowBody(2, 0.05), headers={"Content-Length": "2"})
    assert slow.status_code == 408, slow.text
    assert slow.headers["content-type"] == "application/problem+json"
    assert slow.headers["connection"] == "close"
    assert "0.3 seconds" in slow.json()["detail"]
    assert 0.3 <= elapsed < 1.5
    assert quick.status_code in (200, 422), quick.text  # two spaces: not JSON, but on time


async def test_a_request_reads_opentelemetry_settings_only_if_the_service_traces(
    http: AsyncClient, monkeypatch: pytest.MonkeyPatch, settings: Settings
) -> None:
    """FastAPI's own telemetry is on only in a service that traces (TRACING_ENABLED). On, every
    request looks up OpenTelemetry's providers, and each lookup that finds none reads
    an `OTEL_` variable from the environment."""
    read: list[str] = []
    environ = type(os.environ)
    lookup = environ.__getitem__

    def counted(self: Any, key: str) -> Any:
        read.append(key)
        return lookup(self, key)

    monkeypatch.setattr(environ, "__getitem__", counted)
    response = await http.post("/test/json", json={"traced": False})
    assert response.status_code == 200
    otel = [key for key in read if key.startswith("OTEL_")]
    assert bool(otel) == settings.tracing_enabled, otel
