"""Traces: one server span per request, a child span per SQL statement, sent over OTLP.

Idle unless TRACING_ENABLED is on; OpenTelemetry (the `tracing` extra) is imported
only then. Configured further by OpenTelemetry's own environment variables, read by its
SDK: `OTEL_EXPORTER_OTLP_ENDPOINT` (default http://localhost:4318, OTLP over HTTP),
`OTEL_SERVICE_NAME` (default SERVICE_NAME), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER` and its argument, `OTEL_SDK_DISABLED`; and
`OTEL_TRACES_EXPORTER=none` to keep spans in the process (the tests do).

FastAPI makes the server span itself once a tracer provider is installed (its native
telemetry, `telemetry()` below): named after the route template, with the status, and
continuing the caller's trace (`traceparent`). This module installs the provider, puts
the request id on that span, and writes the statement spans: the SQL as sent, with
placeholders, never the bound parameters (they may be personal data).
"""

import os
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from starlette.types import ASGIApp
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from ..settings import KitSettings
from .logging import request_id_var
from .logging import trace_id_source

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace import Tracer

_SPAN = "_otel_statement_span"  # the open span, on a statement's execution context
# Set once tracing has started, for the whole process: the tracer, and the kind of a
# statement's span (OpenTelemetry's, kept here so that no statement imports it).
_tracer: "Tracer | None" = None
_client: "SpanKind | None" = None


def telemetry(settings: KitSettings) -> "TelemetryConfig":
    """FastAPI's own telemetry: with traces, its server span and nothing between it and
    the statements (dependency, endpoint and serialization spans are off); without,
    none at all, so FastAPI need not look for OpenTelemetry per request."""
    if settings.tracing_enabled:
        return {"operation_spans": False}
    return {"tracing": False, "metrics": False, "logs": False}


def start_tracing(settings: KitSettings) -> None:
    """With TRACING_ENABLED: install the tracer provider and the statement spans, once
    per process (however many apps a test creates); the SDK flushes what is left at exit."""
    global _tracer, _client
    if not settings.tracing_enabled or _tracer is not None:
        return
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import SERVICE_NAME
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: settings.service_name}))
    provider = TracerProvider(resource=resource)
    if os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none":
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer(__name__.partition(".")[0])  # the service's package
    _client = SpanKind.CLIENT
    trace_id_source.append(_current_trace_id)
    # On the Engine class: every engine of the process, replicas and tests' included.
    event.listen(Engine, "before_cursor_execute", _statement_starts)
    event.listen(Engine, "after_cursor_execute", _statement_ends)
    event.listen(Engine, "handle_error", _statement_fails)


def current_tracer() -> "Tracer | None":
    """The service's tracer once tracing has started in this process; None otherwise."""
    return _tracer


def _current_trace_id() -> str:
    from opentelemetry import trace

    span = trace.get_current_span().get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else "-"


class RequestIdOnSpan:
    """Puts the request id on the request's server span (FastAPI's, current here).

    It runs inside `RequestIdMiddleware`, where the id is known; added only with traces.
    """

    def __init__(self, app: ASGIApp) -> None:
        from opentelemetry import trace

        self.app = app
        self.current_span = trace.get_current_span

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.current_span().set_attribute("request.id", request_id_var.get())
        await self.app(scope, receive, send)


def _statement_starts(
    conn: Any, _cursor: Any, statement: str, _params: Any, context: Any, _many: bool
) -> None:
    if context is None or _tracer is None or _client is None:  # no context: bookkeeping
        return
    operation = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "SQL"
    span = _tracer.start_span(
        operation,
        kind=_client,
        attributes={
            "db.system.name": conn.dialect.name,
            "db.operation.name": operation,
            "db.query.text": statement,
        },
    )
    # Kept on the statement's execution context, which the error handler is given too:
    # a failed connection's `info` is no place for it (reading it revalidates the
    # connection, inside SQLAlchemy's error handling).
    setattr(context, _SPAN, span)


def _statement_ends(
    _conn: Any, _cursor: Any, _statement: str, _params: Any, context: Any, _many: bool
) -> None:
    span = getattr(context, _SPAN, None)
    if span is not None:
        span.end()
        setattr(context, _SPAN, None)


def _statement_fails(exception: Any) -> None:
    span = getattr(exception.execution_context, _SPAN, None)
    if span is not None:
        from opentelemetry.trace import Status
        from opentelemetry.trace import StatusCode

        span.set_status(Status(StatusCode.ERROR, type(exception.original_exception).__name__))
        span.end()
        setattr(exception.execution_context, _SPAN, None)
