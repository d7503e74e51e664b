"""`/metrics` and the per-request figures behind it (definitions: `kit/observability/metrics.py`).

Requests are labelled by route template (`/api/v1/projects/{project_id}`), never by
raw path, so the number of series stays that of the routes; a path no route matches
is `unmatched`. A request pays a clock read, a gauge up and down and one histogram
observation: a few microseconds.
"""

import asyncio
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextlib import suppress
from time import perf_counter
from wsgiref.simple_server import WSGIServer

from fastapi import FastAPI
from fastapi import Request
from fastapi import Response
from prometheus_client import Histogram
from prometheus_client import start_http_server
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from ..observability.metrics import IN_FLIGHT
from ..observability.metrics import MULTIPROCESS_DIR
from ..observability.metrics import REQUEST_SECONDS
from ..observability.metrics import forget_this_process
from ..observability.metrics import keep_refreshing
from ..observability.metrics import read_on
from ..observability.metrics import registry
from ..observability.metrics import scrape
from ..settings import Settings

log = logging.getLogger(__name__)

UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


class RequestMetricsMiddleware:
    """Times every HTTP request and counts those in flight, by route and status class."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Labelled series by (method, route, status class): a dict lookup per request
        # instead of prometheus-client's label validation.
        self._series: dict[tuple[str, str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # what the client sees when nothing was sent

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        IN_FLIGHT.inc()
        started = perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            elapsed = perf_counter() - started
            IN_FLIGHT.dec()
            # The router notes the route it matched in the scope.
            route = getattr(scope.get("route"), "path_format", UNMATCHED)
            method = scope["method"] if scope["method"] in _METHODS else "other"
            key = (method, route, _CLASSES.get(status // 100, "5xx"))
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = REQUEST_SECONDS.labels(*key)
            series.observe(elapsed)


async def metrics(_request: Request) -> Response:
    """A plain Starlette route: no dependencies, no OpenAPI operation."""
    body, content_type = await scrape()
    return Response(body, media_type=content_type)


def install_metrics(app: FastAPI, settings: Settings) -> None:
    """Add the request figures and, unless METRICS_PORT moves it, the `/metrics` route.

    Call it after the request-id middleware: the figures then count the 500s that one
    answers too.
    """
    if not settings.metrics_enabled:
        return
    app.add_middleware(RequestMetricsMiddleware)
    if settings.metrics_port is None:
        app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)


@asynccontextmanager
async def serving_metrics(settings: Settings) -> AsyncIterator[None]:
    """For the app's lifespan: serve METRICS_PORT if set; in multiprocess mode, keep this
    worker's state gauges fresh for the other workers' scrapes and, at the end, drop its
    gauges."""
    server: tuple[WSGIServer, threading.Thread] | None = None
    refreshing: asyncio.Task[None] | None = None
    if settings.metrics_enabled and MULTIPROCESS_DIR is not None:
        refreshing = asyncio.create_task(keep_refreshing())
    if settings.metrics_enabled and settings.metrics_port is not None:
        server = _listen(settings.metrics_port)
        read_on(asyncio.get_running_loop())  # its scrapes read the job queue on this loop
    try:
        yield
    finally:
        read_on(None)
        if refreshing is not None:
            refreshing.cancel()
            with suppress(asyncio.CancelledError):
                await refreshing
        if server is not None:
            server[0].shutdown()
            server[0].server_close()
        forget_this_process()


def _listen(port: int) -> tuple[WSGIServer, threading.Thread] | None:
    """A metrics server on `port`, in a thread; None if another worker has the port."""
    try:
        return start_http_server(port, registry=registry())
    except OSError as error:
        log.info("metrics port %d is served by another worker (%s)", port, error.strerror)
        return None
