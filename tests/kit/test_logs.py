"""LOG_FORMAT=json: one JSON object per line, the service's and uvicorn's alike."""

import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from service.kit.observability.logging import configure_logging, request_id_var
from service.main import create_app
from service.settings import Settings

log = logging.getLogger("service.tests")
PACKAGE = "service."  # the service's loggers


@pytest.fixture
def json_lines(settings: Settings) -> Iterator[io.StringIO]:
    """What the service writes to stderr with LOG_FORMAT=json, captured."""
    handler = configure_logging("INFO", "json")
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    yield stream
    configure_logging(settings.log_level, settings.log_format)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[AsyncClient]:
    app: FastAPI = create_app(
        # The test client (127.0.0.1) as a trusted proxy: the request ids it sends are kept.
        settings.model_copy(update={"log_format": "json", "trusted_proxies": ["127.0.0.1"]})
    )
    routes = APIRouter(prefix="/test")

    @routes.get("/logs")
    async def logs() -> dict[str, bool]:
        log.warning("an event with %s", "an argument")
        return {"logged": True}

    @routes.get("/fails")
    async def fails() -> None:
        raise RuntimeError("internal state")

    app.include_router(routes)
    transport = ASGITransport(app=app, raise_app_exceptions=False)
    async with AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_each_line_is_one_json_object_with_the_request_id(
    http: AsyncClient, json_lines: io.StringIO
) -> None:
    response = await http.get("/test/logs", headers={"X-Request-ID": "req-json-1"})
    assert response.status_code == 200
    (line,) = [line for line in parsed(json_lines) if line["logger"] == log.name]
    assert line["message"] == "an event with an argument"
    assert line["level"] == "WARNING"
    assert line["request_id"] == "req-json-1"
    assert line["time"].endswith("+00:00")
    assert "trace_id" not in line  # the service does not trace (test_tracing.py: it does)


async def test_an_exception_is_one_line_with_its_traceback(
    http: AsyncClient, json_lines: io.StringIO
) -> None:
    response = await http.get("/test/fails", headers={"X-Request-ID": "req-json-2"})
    assert response.status_code == 500
    # The service's own: asyncio may log, at any moment, a connection an earlier test ended.
    ours = [line for line in parsed(json_lines) if line["logger"].startswith(PACKAGE)]
    (line,) = [line for line in ours if "exception" in line]
    assert line["request_id"] == "req-json-2"
    assert "RuntimeError: internal state" in line["exception"]
    assert len(json_lines.getvalue().splitlines()) == len(parsed(json_lines))


@pytest.mark.parametrize("access_log", [True, False], ids=["access log", "--no-access-log"])
def test_uvicorns_access_log_stays_as_uvicorn_was_told(
    settings: Settings, access_log: bool
) -> None:
    """uvicorn writes an access line per request whenever its logger has a handler; with
    `--no-access-log` it leaves the logger without one, and the service must too."""
    access = logging.getLogger("uvicorn.access")
    saved = access.handlers[:], access.propagate
    # What uvicorn's own configuration leaves, before it imports the app.
    access.handlers[:] = [logging.NullHandler()] if access_log else []
    access.propagate = False
    try:
        handler = configure_logging("INFO", "text")
        assert access.hasHandlers() is access_log
        assert (handler in logging.getLogger().handlers) and not access.handlers
    finally:
        access.handlers[:], access.propagate = saved
        configure_logging(settings.log_level, settings.log_format)


def test_uvicorn_lines_come_out_in_the_same_format(json_lines: io.StringIO) -> None:
    """Records as uvicorn makes them: its server messages and its access line."""
    token = request_id_var.set("req-json-3")
    try:
        logging.getLogger("uvicorn.error").info("Application startup complete.")
        access = '%s - "%s %s HTTP/%s" %d'
        logging.getLogger("uvicorn.access").info(
            access, "127.0.0.1:5000", "GET", "/health/live", "1.1", 200
        )
    finally:
        request_id_var.reset(token)
    server, request = [line for line in parsed(json_lines) if line["logger"].startswith("uvicorn")]
    assert server["logger"] == "uvicorn.error"
    assert server["message"] == "Application startup complete."
    assert request["logger"] == "uvicorn.access"
    assert request["request_id"] == "req-json-3"
    assert (request["method"], request["path"], request["status"]) == ("GET", "/health/live", 200)
    assert request["message"] == '127.0.0.1:5000 - "GET /health/live HTTP/1.1" 200'
