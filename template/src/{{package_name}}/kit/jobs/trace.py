"""The trace of the request that enqueued a job, carried into the job's spans.

At enqueue, the current trace context (W3C `traceparent` and `tracestate`, the fields
of OpenTelemetry's configured propagator) goes into the job's headers. In the worker,
each run of the job is a span (`job <name>`, a consumer) whose parent is that context:
the request and the job it caused show as one trace, and the handler's statements as
children of the job's span.

Idle without traces (TRACING_ENABLED off): nothing is written, nothing imported.
"""

from collections.abc import Iterator
from collections.abc import Mapping
from contextlib import contextmanager

from ..observability.tracing import current_tracer


def trace_headers() -> dict[str, str]:
    """The current trace context as a job's headers; none without one."""
    if current_tracer() is None:
        return {}
    from opentelemetry.propagate import inject

    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier


@contextmanager
def job_span(
    name: str, job_id: int, attempt: int, request_id: str, headers: Mapping[str, object]
) -> Iterator[None]:
    """The span of one run of a job, current while it runs; none without traces."""
    tracer = current_tracer()
    if tracer is None:
        yield
        return
    from opentelemetry.propagate import extract
    from opentelemetry.trace import SpanKind

    # The enqueuing trace's context; a new trace without one.
    parent = extract({key: value for key, value in headers.items() if isinstance(value, str)})
    attributes: dict[str, str | int] = {
        "job.id": job_id,
        "job.name": name,
        "job.attempt": attempt,
        "request.id": request_id,
    }
    with tracer.start_as_current_span(
        f"job {name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
    ):
        yield
