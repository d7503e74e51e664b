"""Traces (TRACING_ENABLED): a request is one server span with a child span per SQL
statement, and the statements carry no bound parameters. Spans are caught in memory as they end."""

import io
import json
import logging
from collections.abc import AsyncIterator

import pytest
from fastapi import APIRouter, FastAPI
from httpx import ASGITransport, AsyncClient
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from service.kit.http.dependencies import ReadSessionDep
from service.kit.observability.logging import configure_logging
from service.main import create_app
from service.settings import Settings
from sqlalchemy import text

BOUND_VALUE = "a-bound-value-never-traced"
log = logging.getLogger("service.tests")


@pytest.fixture(scope="module")
async def traced(settings: Settings) -> AsyncIterator[tuple[AsyncClient, InMemorySpanExporter]]:
    app: FastAPI = create_app(
        # The test client (127.0.0.1) as a trusted proxy: the request ids it sends are kept.
        settings.model_copy(update={"tracing_enabled": True, "trusted_proxies": ["127.0.0.1"]})
    )
    routes = APIRouter(prefix="/test")

    @routes.get("/things/{name}")
    async def thing(name: str, session: ReadSessionDep) -> dict[str, int]:
        log.warning("looking for a thing")
        by_name = text("SELECT CAST(:name AS VARCHAR(100)) AS name, 1 AS n")
        found = await session.execute(by_name, {"name": name})
        first = await session.execute(text("SELECT 2"))
        return {"n": found.one().n + first.scalar_one()}

    app.include_router(routes)
    exporter = InMemorySpanExporter()
    async with app.router.lifespan_context(app):  # the lifespan starts tracing
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        transport = ASGITransport(app=app, raise_app_exceptions=False)
        async with AsyncClient(transport=transport, base_url="http://test") as client:
            yield client, exporter
    exporter.shutdown()  # later spans are dropped, not kept


@pytest.fixture
def spans(traced: tuple[AsyncClient, InMemorySpanExporter]) -> InMemorySpanExporter:
    """The exporter, emptied: what it holds is what the test's requests made."""
    traced[1].clear()
    return traced[1]


def server_span(spans: tuple[ReadableSpan, ...]) -> ReadableSpan:
    (server,) = [span for span in spans if span.kind is SpanKind.SERVER]
    return server


async def test_a_request_is_a_server_span_with_a_child_per_statement(
    traced: tuple[AsyncClient, InMemorySpanExporter], spans: InMemorySpanExporter
) -> None:
    http, _ = traced
    headers = {"X-Request-ID": "req-trace-1"}
    response = await http.get(f"/test/things/{BOUND_VALUE}", headers=headers)
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    server = server_span(finished)
    assert server.name == "GET /test/things/{name}"
    assert server.parent is None
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/test/things/{name}"
    assert server.attributes["http.response.status_code"] == 200
    assert server.attributes["request.id"] == "req-trace-1"
    statements = [span for span in finished if span.kind is SpanKind.CLIENT]
    texts = [str((span.attributes or {})["db.query.text"]) for span in statements]
    assert any("AS name" in sql for sql in texts) and any("SELECT 2" in sql for sql in texts)
    assert server.context is not None
    for span in statements:
        assert span.parent is not None and span.parent.span_id == server.context.span_id
        assert span.context is not None and span.context.trace_id == server.context.trace_id
    # The bound value reached the database, but no span carries it.
    everything = json.dumps([span.to_json() for span in finished])
    assert BOUND_VALUE not in everything.replace(f"/test/things/{BOUND_VALUE}", "")


async def test_the_callers_trace_is_continued(
    traced: tuple[AsyncClient, InMemorySpanExporter], spans: InMemorySpanExporter
) -> None:
    http, _ = traced
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = f"00-{trace_id}-00f067aa0ba902b7-01"
    assert (await http.get("/test/things/x", headers={"traceparent": parent})).status_code == 200
    server = server_span(spans.get_finished_spans())
    assert server.context is not None and format(server.context.trace_id, "032x") == trace_id
    assert server.parent is not None and server.parent.is_remote


async def test_the_trace_id_is_in_the_log_line(
    traced: tuple[AsyncClient, InMemorySpanExporter],
    spans: InMemorySpanExporter,
    settings: Settings,
) -> None:
    http, _ = traced
    handler = configure_logging("INFO", "json")
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream := io.StringIO())
    try:
        assert (await http.get("/test/things/y")).status_code == 200
    finally:
        configure_logging(settings.log_level, settings.log_format)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    (line,) = [line for line in lines if line["logger"] == log.name]
    server = server_span(spans.get_finished_spans())
    assert server.context is not None
    assert line["trace_id"] == format(server.context.trace_id, "032x")
