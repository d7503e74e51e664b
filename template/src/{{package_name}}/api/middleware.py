"""Pure ASGI middleware: no `BaseHTTPMiddleware`, which orphans work when clients leave."""

import itertools
import os
import re
import secrets

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from ..core.logging import request_id_var

_HEADER_KEY = b"x-request-id"
# A caller's id is echoed only when it is short and plain, so it is safe in logs.
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
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
    """Gives every request an id: the caller's `X-Request-ID`, or a new one."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v for k, v in scope["headers"] if k == _HEADER_KEY), b"").decode("latin-1")
        request_id = incoming if _SAFE_ID.fullmatch(incoming) else f"{_PREFIX}-{next(_COUNTER):x}"
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
