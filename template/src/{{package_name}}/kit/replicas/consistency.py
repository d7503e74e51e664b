"""The consistency token: read-your-writes across requests when replicas serve reads.

With DB_REPLICA_URLS set, the response to a write that committed carries
`X-Consistency-Token`, the primary's WAL position after the commit, signed
(`16/B374D848.<signature>`). A client that sends it back on a read is served by a replica
that has replayed past it, or by the primary: it sees its own write. Without replicas
(on MariaDB, MySQL and SQLite never), no token is issued and a well-formed one presented
is ignored; the OpenAPI document shows the header either way, so it does not depend on
the backend.

The signature (HMAC-SHA256 under a key drawn from CURSOR_SECRET and SERVICE_NAME) lets a
client present only a position this service issued: an unsigned position would let
anyone send every read to the primary, and make every read ask the replicas where they
are. A token of the right form that does not verify (forged, tampered, truncated, signed
by another service or under an earlier secret, or unsigned as earlier releases issued
them) is read as no token: the read is served as one without it. A value not of the
token's form at all is a 422. The
position is taken right after COMMIT on the connection that committed
(`kit/replicas/replicas.py`); if the primary could not answer then, the write's 2xx goes
without a token rather than failing a write that is stored.

The read-session dependency takes the token from the request (`presented_token`); the
write-session dependency records the commit's when it closes the session, before the
response starts (`dependencies.py`), and `ConsistencyTokenMiddleware` adds it to the
response.
"""

import base64
import hashlib
import hmac
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

from .positions import lsn

HEADER = "X-Consistency-Token"
_STATE = "consistency_token"
_DESCRIPTION = (
    "The `X-Consistency-Token` of an earlier write's response: this read then sees that "
    "write, even when a replica serves it. A token this service did not issue is ignored."
)
_ISSUED = (
    "With read replicas, when the request committed a write: send it on later reads "
    "(request header of the same name) to see this write."
)

# A position, then its signature; a position alone is the form earlier releases issued.
PATTERN = r"^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}(\.[A-Za-z0-9_-]{1,64})?$"
_FORM = re.compile(PATTERN)
# The signature: HMAC-SHA256 cut to 128 bits, in base64url without padding (22 characters).
_SIGNATURE_BYTES = 16
_KEY_LABEL = b"kit consistency token\0"
# The request header as OpenAPI shows it: read by hand (`presented_token`), so that a
# request without replicas pays no parameter validation for it.
_PARAMETER = {
    "name": HEADER,
    "in": "header",
    "required": False,
    "description": _DESCRIPTION,
    "schema": {"type": "string", "pattern": PATTERN},
    "example": "16/B374D848.mR1xJ0q6b1gQ8yVt2pZ3uA",
}


class TokenSigner:
    """Signs a WAL position into a token, and reads back the position of a token it signed.

    Its key is derived from `secret` for this use and this service (`service`): no
    signature of a cursor, and none of another service sharing the secret, is a token here.
    """

    def __init__(self, secret: str, service: str) -> None:
        label = _KEY_LABEL + service.encode()
        self._key = hmac.new(secret.encode(), label, hashlib.sha256).digest()

    def _signature(self, position: str) -> str:
        digest = hmac.new(self._key, position.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest[:_SIGNATURE_BYTES]).rstrip(b"=").decode()

    def sign(self, position: str) -> str:
        return f"{position}.{self._signature(position)}"

    def position(self, token: str) -> int | None:
        """The position `token` carries if this signer issued it, else None."""
        position, _, signature = token.partition(".")
        if not hmac.compare_digest(signature, self._signature(position)):
            return None
        return lsn(position)


def signer(request: Request) -> TokenSigner:
    """The app's signer, made once from its settings' CURSOR_SECRET and SERVICE_NAME."""
    state = request.app.state
    made: TokenSigner | None = getattr(state, "consistency_signer", None)
    if made is None:
        settings = state.settings
        made = TokenSigner(settings.cursor_secret.get_secret_value(), settings.service_name)
        state.consistency_signer = made
    return made


def presented_token(request: Request) -> int | None:
    """The WAL position of the token the request presents, if this service issued it; a
    malformed one is a 422, a well-formed one it did not issue is read as none."""
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
    return signer(request).position(value)


def record(request: Request, position: str) -> None:
    """Have the response to `request` carry the token of WAL position `position`."""
    request.scope.setdefault("state", {})[_STATE] = signer(request).sign(position)


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
