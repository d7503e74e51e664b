"""The worker's own probes and figures, on JOBS_HEALTH_PORT: a few lines of HTTP/1.1
on asyncio, in the worker's loop.

- `GET /health/live`: 200 while the worker's loop answers. A handler that blocks the
  loop (synchronous I/O, a long computation) stops the answers: the probe fails and the
  orchestrator restarts the worker.
- `GET /health/ready`: 200 while the worker's queue connection is open and the database
  answers a `SELECT 1` within HEALTH_TIMEOUT on the probe connection; 503 otherwise, and
  from the moment it is told to stop (SIGTERM), so a rollout waits for its successor.
- `GET /metrics`: the worker's figures (kit/observability/metrics.py).

An HTTP port rather than a file the probe checks by `exec`: the worker needs a port for
its `/metrics` anyway, and an HTTP probe costs the kubelet a request, not a process.
Anything else is a clear 4xx; a request is read for at most 5 s and 8 KiB.
"""

import asyncio
import json
from collections.abc import Awaitable
from collections.abc import Callable

from ..observability.metrics import scrape

# Every interface: the kubelet probes the pod's address.
_EVERY_INTERFACE = "0.0.0.0"  # noqa: S104
_READ_SECONDS = 5.0
_MAX_REQUEST = 8192
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}

# Says why the worker is not ready, or None when it is.
Readiness = Callable[[], Awaitable[str | None]]


async def serve_health(port: int, readiness: Readiness) -> asyncio.Server:
    """Answer the probes and scrapes on `port`, on every interface."""

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, content_type, body = await _respond(reader, readiness)
            head = (
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the prober went away; nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(answer, host=_EVERY_INTERFACE, port=port, limit=_MAX_REQUEST)


async def _respond(reader: asyncio.StreamReader, readiness: Readiness) -> tuple[int, str, bytes]:
    try:
        async with asyncio.timeout(_READ_SECONDS):
            request = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return _json(400, {"status": "bad request"})
    parts = request.split(b"\r\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return _json(400, {"status": "bad request"})
    method, path = parts[0], parts[1].split(b"?", 1)[0]
    if path not in (b"/health/live", b"/health/ready", b"/metrics"):
        return _json(404, {"status": "not found"})
    if method not in (b"GET", b"HEAD"):
        return _json(405, {"status": "method not allowed"})
    if path == b"/health/live":
        return _json(200, {"status": "ok"})
    if path == b"/health/ready":
        why = await readiness()
        return _json(200, {"status": "ok"}) if why is None else _json(503, {"status": why})
    body, content_type = await scrape()
    return 200, content_type, body


def _json(status: int, content: dict[str, str]) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(content).encode()
