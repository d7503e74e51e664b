"""What routes ask of the caller: who it is (`CurrentPrincipal`) and what it may do
(`require("projects:write")`), whatever way of authenticating the service has.

    @router.patch("/{id}", dependencies=[require("projects:write")])
    async def update(id: Key, caller: CurrentPrincipal) -> ...:
        check_owner(caller, project.owner)

With AUTH=none every caller is `ANONYMOUS`: each permission passes and owns everything,
so the routes behave as they would without authentication. Otherwise a request without
a bearer token, or with one that does not verify, is answered 401; a caller without
the permission, or not the owner, 403 (`kit/http/problems.py`).
"""

from collections.abc import Callable
from typing import Annotated
from typing import Any
from typing import TypeVar

from fastapi import Depends
from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.params import Depends as Dependency

from ..http.direct import direct
from .principal import ANONYMOUS
from .principal import Authenticator
from .principal import Forbidden
from .principal import Principal
from .principal import Unauthenticated

# The bearer scheme as the OpenAPI document declares it (`kit/http/openapi.py`, with
# authentication only), so the interactive docs' Authorize sends the token. Routes do
# not read the header through FastAPI's `HTTPBearer`: `current_principal` reads it, to
# answer each malformed one with its own RFC 6750 error, and is called directly
# (`kit/http/direct.py`) like the kit's other dependencies.
BEARER_SCHEME = "bearer"
BEARER = {
    "type": "http",
    "scheme": "bearer",
    "bearerFormat": "JWT",
    "description": "An access token: `Authorization: Bearer <token>`.",
}
F = TypeVar("F", bound=Callable[..., Any])
# The dependencies that ask for the caller: an operation with one declares the scheme.
_ASK_FOR_THE_CALLER: set[Callable[..., Any]] = set()
# request.state: the caller, once authenticated in this request.
_CALLER = "kit_principal"


def _asks_for_the_caller(call: F) -> F:
    _ASK_FOR_THE_CALLER.add(call)
    return direct(call)


def asks_for_the_caller(dependant: Dependant) -> bool:
    """Whether a route (or any of its dependencies) asks who the caller is."""
    return any(
        dependency.call in _ASK_FOR_THE_CALLER or asks_for_the_caller(dependency)
        for dependency in dependant.dependencies
    )


@_asks_for_the_caller
async def current_principal(request: Request) -> Principal:
    """The caller: `ANONYMOUS` without authentication, else whom the token names
    (authenticated once per request, however many dependencies ask)."""
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        return ANONYMOUS
    known: Principal | None = getattr(request.state, _CALLER, None)
    if known is not None:
        return known
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("this request needs a bearer token", error="")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated(
            "the Authorization header must be `Bearer <token>`", error="invalid_request"
        )
    principal = await authenticator.authenticate(token)
    setattr(request.state, _CALLER, principal)
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def allowed(principal: Principal, permission: str) -> bool:
    """Whether `principal` may do what `permission` names (anyone may, without auth)."""
    return principal.anonymous or principal.may(permission)


def require(permission: str) -> Dependency:
    """A dependency that lets only callers holding `permission` through (403 otherwise):
    in a route's or a router's `dependencies=[...]`."""

    @_asks_for_the_caller
    async def check(request: Request) -> Principal:
        principal = await current_principal(request)
        if not allowed(principal, permission):
            raise Forbidden(f"this needs the {permission} permission", permission=permission)
        return principal

    dependency: Dependency = Depends(check)
    return dependency


def check_owner(principal: Principal, owner: str | None, *, unless: str = "") -> None:
    """Forbidden unless `principal` is `owner` (or holds the permission `unless` names,
    an administrator's); a resource of no owner (None) is the administrator's alone.
    Without authentication every caller passes."""
    if principal.anonymous or principal.subject == owner:
        return
    if unless and principal.may(unless):
        return
    raise Forbidden("only the owner may do this")
