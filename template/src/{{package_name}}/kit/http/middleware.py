"""Pure ASGI middleware: no `BaseHTTPMiddleware`, which orphans work when clients leave."""

import asyncio
import itertools
import os
import re
import secrets
import sys
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from ..errors import DatabaseMisconfigured
from ..observability.logging import request_id_var
from ..settings import SettingsError
from .problems import unexpected
from .proxies import from_trusted_proxy

F = TypeVar("F", bound=Callable[..., Any])

_HEADER_KEY = b"x-request-id"
# A trusted proxy's id is kept only when it is short and plain, so it is safe in logs.
_MAX_ID = 128
_SAFE_ID = re.compile(rb"[A-Za-z0-9._-]{1,%d}" % _MAX_ID)
# New ids: a random prefix per process and a counter. Unique across processes and
# restarts, and free: ids need not be secret, and the OS random source costs a system
# call per request. A forked worker (gunicorn --preload) draws a prefix of its own.
_PREFIX = secrets.token_hex(8)
_COUNTER = itertools.count(1)


def _new_prefix() -> None:
    global _PREFIX, _COUNTER  # per-process state, reset in a forked child
    _PREFIX, _COUNTER = secrets.token_hex(8), itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)


class RequestIdMiddleware:
    """Gives every request an id: the `X-Request-ID` a trusted proxy sent (TRUSTED_PROXIES,
    `proxies.py`) when it is short and plain, else a new one. A client's own is never
    kept: it could take another request's id, or write what it likes into the logs.

    It also answers what no handler did, with the 500 of `kit/http/problems.py`: Starlette's
    last-resort handler sits outside every middleware, where the id is already gone, so
    its 500 would carry no `X-Request-ID` and log its line without the id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _forwarded_id(scope) or f"{_PREFIX}-{next(_COUNTER):x}"
        token = request_id_var.set(request_id)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            if started:
                # Half a response is out: the server must cut the connection. The id
                # stays set, so the outer handler's log line still carries it.
                raise
            response = await unexpected(Request(scope), error)
            await response(scope, receive, send_with_id)
        request_id_var.reset(token)


def _forwarded_id(scope: Scope) -> str | None:
    """The request id a trusted proxy sent, if it is safe to log."""
    if not from_trusted_proxy(scope):
        return None
    incoming = next((v for k, v in scope["headers"] if k == _HEADER_KEY), b"")
    if len(incoming) > _MAX_ID or not _SAFE_ID.fullmatch(incoming):
        return None
    return incoming.decode("ascii")


# Body limits routes declared with `@body_limit`, by endpoint.
_ROUTE_LIMITS: dict[object, int] = {}


def body_limit(max_bytes: int) -> Callable[[F], F]:
    """Let one route take bodies up to `max_bytes` instead of `MAX_BODY_BYTES`.

    Put it under the route's decorator: `@router.post(...)` then `@body_limit(50 * 2**20)`.
    """

    def declare(endpoint: F) -> F:
        _ROUTE_LIMITS[endpoint] = max_bytes
        return endpoint

    return declare


class BodyLimitMiddleware:
    """Refuses a request body over the limit with a 413, before it is read whole, and one
    that arrives too slowly with a 408.

    The limit is `max_bytes` (`MAX_BODY_BYTES`), or the route's own (`@body_limit`). It
    is checked when the route first reads the body, after routing: a `Content-Length`
    over it is refused before any byte is read, and a body without one (chunked) is
    counted as it arrives and refused at the first chunk past the limit. A request
    holds at most the limit and one chunk in memory, however large its body.

    The whole body must arrive within `read_timeout` seconds (`BODY_READ_TIMEOUT`) of the
    route's first read: a client that sends it a byte at a time would otherwise hold
    the request, and what it sent, for as long as it likes. The 408 says
    `Connection: close`, so uvicorn closes the connection instead of waiting on the rest.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, read_timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        received = 0
        deadline: float | None = None
        complete = False

        async def limited() -> Message:
            nonlocal received, deadline, complete
            if complete:  # the body is in; what follows is the wait for a disconnect
                return await receive()
            limit = _ROUTE_LIMITS.get(scope.get("endpoint"), self.max_bytes)
            if received == 0 and _declared_length(scope) > limit:
                raise _too_large(limit)
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.read_timeout
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise _too_slow(self.read_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit)
                complete = not message.get("more_body", False)
            return message

        await self.app(scope, limited, send)


def _declared_length(scope: Scope) -> int:
    """The `Content-Length` sent, 0 if none (the server has refused a malformed one)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if len(value) < 19 else 2**63  # int() refuses 4,300 digits
    return 0


def _too_large(limit: int) -> HTTPException:
    # Raised from `receive`, it reaches the problem handlers as any HTTP error does. The
    # server discards the rest of the body as it arrives, holding none of it, so a client
    # that sends its whole body before reading still gets the 413.
    return HTTPException(413, f"the request body is larger than {limit} bytes")


def _too_slow(timeout: float) -> HTTPException:
    return HTTPException(
        408,
        f"the request body did not arrive within {timeout:g} seconds",
        headers={"Connection": "close"},
    )


class QuietStartupFailure:
    """A start-up that fails for a reason already logged in one line ends without a
    traceback: a database that cannot be used as configured, or a setting the server
    refuses (a superuser or the owner in production, a connection budget over the
    limit). uvicorn prints whatever text the app sends with `lifespan.startup.failed`,
    and for those this sends none."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            # Sent from inside the `except` that caught the failure: it is the current one.
            failed = message["type"] == "lifespan.startup.failed"
            refused = isinstance(sys.exc_info()[1], DatabaseMisconfigured | SettingsError)
            if failed and refused:
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, send_quietly)


_CREDENTIALS = (b"authorization", b"cookie")


class SecurityHeaders:
    """Headers every response carries, whoever answered it (a route, a problem handler,
    Starlette's last-resort 500, CORS's preflight):

    - `X-Content-Type-Options: nosniff`: a browser takes the content type as sent, and
      never runs a JSON body it guessed to be a script or a page;
    - `Cache-Control: no-store` on errors, which no cache or browser should keep or serve
      again, and on the answer to a request with credentials (Authorization or a cookie),
      whose body is one caller's; a route that set its own Cache-Control for a success
      keeps it.

    It adds no `Server` header, and uvicorn's is left out by `--no-server-header`.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        credentials = any(key in _CREDENTIALS for key, _ in scope["headers"])

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["X-Content-Type-Options"] = "nosniff"
                kept = "cache-control" in headers and message["status"] < 400
                if message["status"] >= 400 or (credentials and not kept):
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
