"""The trace of the request that enqueued a job, carried into the job's spans: the job's
span is a child of the request's server span, in its trace, and the handler's
statements are children of the job's span. OpenTelemetry's real SDK, its spans caught
in memory as they end; the worker runs in this process."""

import pytest
from fastapi import APIRouter
from httpx import ASGITransport, AsyncClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from service.kit.db.session import WriteSession, unit_of_work
from service.kit.http.dependencies import WriteSessionDep
from service.kit.jobs import JobRun, Jobs, enqueue
from service.kit.jobs.trace import trace_headers
from service.main import create_app
from service.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .test_jobs_worker import job_row, unique, until, worker


@pytest.mark.postgresql
async def test_a_jobs_span_is_a_child_of_the_request_that_enqueued_it(
    settings: Settings, engine: AsyncEngine
) -> None:
    name = unique("traced")
    traced = settings.model_copy(update={"tracing_enabled": True, "trusted_proxies": ["127.0.0.1"]})
    app = create_app(traced)
    routes = APIRouter(prefix="/test-jobs")

    @unit_of_work
    async def write(session: WriteSession) -> int | None:
        return await enqueue(session, name, {"n": 1})

    @routes.post("/enqueue")
    async def enqueue_one(session: WriteSessionDep) -> dict[str, int | None]:
        return {"id": await write(session)}

    app.include_router(routes)
    ran: list[int] = []
    jobs = Jobs()

    @jobs.job(name)
    async def handler(run: JobRun) -> None:
        async with run.db.read_session() as session:
            await session.execute(text("SELECT 41 + 1"))
        ran.append(run.id)

    exporter = InMemorySpanExporter()
    async with app.router.lifespan_context(app):  # the lifespan starts tracing
        provider = trace.get_tracer_provider()
        assert isinstance(provider, TracerProvider)
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        try:
            transport = ASGITransport(app=app, raise_app_exceptions=False)
            async with AsyncClient(transport=transport, base_url="http://test") as http:
                answer = await http.post(
                    "/test-jobs/enqueue", headers={"X-Request-ID": "req-job-trace"}
                )
            assert answer.status_code == 200, answer.text
            job_id = answer.json()["id"]
            async with worker(traced, jobs):

                async def done() -> bool:
                    return job_id in ran and await job_row(engine, job_id) is None

                await until(done, 20, "the job run")
            finished = exporter.get_finished_spans()
        finally:
            exporter.shutdown()  # later spans are dropped, not kept

    (server,) = [s for s in finished if s.kind is SpanKind.SERVER and "/test-jobs/" in s.name]
    (job,) = [s for s in finished if s.kind is SpanKind.CONSUMER and s.name == f"job {name}"]
    assert server.context is not None and job.context is not None
    assert job.context.trace_id == server.context.trace_id
    assert job.parent is not None and job.parent.span_id == server.context.span_id
    assert job.attributes is not None
    assert job.attributes["job.id"] == job_id
    assert job.attributes["job.name"] == name
    assert job.attributes["job.attempt"] == 1
    assert job.attributes["request.id"] == "req-job-trace"
    (statement,) = [
        s
        for s in finished
        if s.attributes is not None and s.attributes.get("db.query.text") == "SELECT 41 + 1"
    ]
    assert statement.parent is not None and statement.parent.span_id == job.context.span_id


def test_outside_a_trace_a_job_carries_no_trace_context() -> None:
    """On every backend, traces on in this process or not: no span, no header."""
    assert trace_headers() == {}
