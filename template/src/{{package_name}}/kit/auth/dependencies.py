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

from typing import Annotated

from fastapi import Depends
from fastapi import Request
from fastapi import Security
from fastapi.params import Depends as Dependency
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.security import HTTPBearer

from .principal import ANONYMOUS
from .principal import Authenticator
from .principal import Forbidden
from .principal import Principal
from .principal import Unauthenticated

# Declares the bearer scheme in the OpenAPI document, so the interactive docs' Authorize
# sends the token (kit/http/openapi.py leaves it out when AUTH=none). The header itself
# is read below, to answer each malformed one with its own RFC 6750 error.
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="bearer",
    bearerFormat="JWT",
    description="An access token: `Authorization: Bearer <token>`.",
)


async def current_principal(
    request: Request,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The caller: `ANONYMOUS` without authentication, else whom the token names."""
    authenticator: Authenticator | None = getattr(request.app.state, "authenticator", None)
    if authenticator is None:
        return ANONYMOUS
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("this request needs a bearer token", error="")
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        raise Unauthenticated(
            "the Authorization header must be `Bearer <token>`", error="invalid_request"
        )
    return await authenticator.authenticate(token)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def allowed(principal: Principal, permission: str) -> bool:
    """Whether `principal` may do what `permission` names (anyone may, without auth)."""
    return principal.anonymous or principal.may(permission)


def require(permission: str) -> Dependency:
    """A dependency that lets only callers holding `permission` through (403 otherwise):
    in a route's or a router's `dependencies=[...]`."""

    async def check(principal: CurrentPrincipal) -> Principal:
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
