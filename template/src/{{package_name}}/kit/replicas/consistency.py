"""The consistency token: read-your-writes across requests when replicas serve reads.

With DB_REPLICA_URLS set, the response to a write that committed carries
`X-Consistency-Token`, the primary's WAL position after the commit (`16/B374D848`). A
client that sends it back on a read is served by a replica that has replayed past it,
or by the primary: it sees its own write. Without replicas (on MariaDB, MySQL and SQLite
never), no token is issued and a well-formed one presented is ignored; the OpenAPI
document shows the header either way, so it does not depend on the backend. The
position is taken right after COMMIT on the connection that committed
(`kit/replicas/replicas.py`); if the primary could not answer then, the write's 2xx goes
without a token rather than failing a write that is stored.

The read-session dependency takes the token from the request (`presented_token`); the
write-session dependency records the commit's when it closes the session, before the
response starts (`dependencies.py`), and `ConsistencyTokenMiddleware` adds it to the
response.
"""

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from .replicas import lsn

HEADER = "X-Consistency-Token"
_STATE = "consistency_token"
_DESCRIPTION = (
    "The `X-Consistency-Token` of an earlier write's response: this read then sees that "
    "write, even when a replica serves it."
)
_ISSUED = (
    "With read replicas, when the request committed a write: send it on later reads "
    "(request header of the same name) to see this write."
)

PATTERN = r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$"
_FORM = re.compile(PATTERN)
# The request header as OpenAPI shows it: read by hand (`presented_token`), so that a
# request without replicas pays no parameter validation for it.
_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": _DESCRIPTION,
    "schema": {"type": "string", "pattern": PATTERN},
    "example": "16/B374D848",
}


def presented_token(request: Request) -> int | None:
    """The WAL position of the token the request presents, if any; a malformed one is a 422."""
    value = request.headers.get(HEADER)
    if value is None:
        return None
    if not _FORM.match(value):
        raise RequestValidationError(
            [
                {
                    "type": "string_pattern_mismatch",
                    "loc": ("header", HEADER),
                    "msg": f"String should match pattern '{PATTERN}'",
                    "input": value,
                }
            ]
        )
    return lsn(value)


def record(request: Request, token: str) -> None:
    """Have the response to `request` carry `token`."""
    request.scope.setdefault("state", {})[_STATE] = token


class ConsistencyTokenMiddleware:
    """Adds the token a write recorded to its response's headers."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state: dict[str, Any] = scope.setdefault("state", {})

        async def send_with_token(message: Message) -> None:
            token = state.get(_STATE)
            if message["type"] == "http.response.start" and token:
                token_header = (HEADER.lower().encode(), token.encode())
                message["headers"] = [*message.get("headers", []), token_header]
            await send(message)

        await self.app(scope, receive, send_with_token)


def document_consistency_token(
    app: FastAPI, read_dependency: Callable[..., Any], write_dependency: Callable[..., Any]
) -> None:
    """Show the request header on every operation that takes `read_dependency`, and the
    response header on every one that takes `write_dependency` (the header is issued and
    heeded only with replicas; the document describes the API either way)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            header = {"description": _ISSUED, "schema": {"type": "string"}}
            for route in app.routes:
                if not isinstance(route, APIRoute) or not route.include_in_schema:
                    continue
                reads = _takes(route.dependant, read_dependency)
                writes = _takes(route.dependant, write_dependency)
                for method in route.methods or ():
                    operation = document["paths"][route.path_format][method.lower()]
                    if reads:
                        operation.setdefault("parameters", []).append(_PARAMETER)
                    for status, response in operation["responses"].items():
                        if writes and status.startswith("2"):
                            response.setdefault("headers", {})[HEADER] = header
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _takes(dependant: Dependant, call: Callable[..., Any]) -> bool:
    return any(d.call is call or _takes(d, call) for d in dependant.dependencies)
