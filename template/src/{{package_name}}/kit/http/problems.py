"""One error format for every response: problem details (RFC 9457).

Every error leaves through here, so no body ever carries SQL, driver messages, stack
traces or the database URL: unexpected exceptions are logged in full and answered
with a generic 500.
"""

import logging
from http import HTTPStatus
from typing import Any
from typing import cast

from fastapi import FastAPI
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InterfaceError
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..auth.principal import Forbidden
from ..auth.principal import ProviderUnavailable
from ..auth.principal import Unauthenticated
from ..db.constraints import constraint_error
from ..db.dialect import LOST_CONNECTION
from ..db.dialect import refused_value
from ..db.dialect import violation
from ..errors import Conflict
from ..errors import DatabaseUnavailable
from ..errors import DomainError
from ..errors import InvalidData
from ..errors import InvalidQuery
from ..errors import NotFound
from ..errors import StaleVersion
from ..observability.logging import request_id_var
from ..observability.metrics import PROBLEMS

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_TYPES = "https://problems.example.com/"  # documentation URIs for each problem type


class Problem(BaseModel):
    """Documented in OpenAPI for every error response."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str
    errors: list[dict[str, Any]] | None = None


def problem(
    request: Request,
    status: int,
    kind: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _TYPES + kind if kind != "about:blank" else kind,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id_var.get(),
    }
    if errors is not None:
        body["errors"] = errors
    PROBLEMS.labels(kind, str(status)).inc()
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _is_unavailable(error: BaseException) -> bool:
    """Faults of reaching the database, as opposed to faults in what was asked of it."""
    if isinstance(error, PoolTimeoutError | OperationalError | InterfaceError | OSError):
        return True
    if isinstance(error, DBAPIError):
        return error.connection_invalidated
    return isinstance(error, TimeoutError)


# Starlette types every handler as (Request, Exception); each is registered for one class.


async def _domain(request: Request, exc: Exception) -> JSONResponse:
    error = cast(DomainError, exc)
    if isinstance(error, NotFound):
        return problem(request, 404, "not-found", error.detail)
    if isinstance(error, StaleVersion):
        return problem(request, 409, "stale-version", error.detail)
    if isinstance(error, Conflict):
        return problem(request, 409, "conflict", error.detail)
    if isinstance(error, InvalidQuery):
        loc = ["query", error.field] if error.field else ["query"]
        errors = [{"loc": loc, "msg": error.detail, "type": "invalid_query"}]
        return problem(request, 422, "invalid-query", error.detail, errors=errors)
    if isinstance(error, InvalidData):
        return problem(request, 422, "invalid-data", error.detail)
    return problem(request, 400, "bad-request", error.detail)


async def _unauthenticated(request: Request, exc: Exception) -> JSONResponse:
    """401 with the RFC 6750 challenge: the scheme, and why the token was refused."""
    error = cast(Unauthenticated, exc)
    challenge = f'Bearer realm="{_quotable(request.app.state.settings.service_name)}"'
    if error.error:
        challenge += f', error="{error.error}", error_description="{_quotable(error.reason)}"'
    return problem(
        request, 401, "unauthenticated", error.reason, headers={"WWW-Authenticate": challenge}
    )


async def _forbidden(request: Request, exc: Exception) -> JSONResponse:
    error = cast(Forbidden, exc)
    headers = {}
    if error.permission:  # RFC 6750, 3.1: the token lacks the scope the route needs
        scope = _quotable(error.permission)
        headers["WWW-Authenticate"] = f'Bearer error="insufficient_scope", scope="{scope}"'
    return problem(request, 403, "forbidden", error.reason, headers=headers)


async def _provider_unavailable(request: Request, exc: Exception) -> JSONResponse:
    error = cast(ProviderUnavailable, exc)
    log.warning("identity provider unavailable: %s", error.reason)
    return problem(
        request,
        503,
        "identity-provider-unavailable",
        "the identity provider is unreachable, so the token cannot be checked; retry later",
        headers={"Retry-After": str(error.retry_after)},
    )


def _quotable(text: str) -> str:
    """Text a quoted-string of an HTTP header can carry (RFC 9110, 5.6.4)."""
    return "".join(c for c in text if c.isprintable() and c not in '"\\' and c.isascii())


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    error = cast(RequestValidationError, exc)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in error.errors()]
    if any(e["type"] == "json_invalid" for e in errors):  # nothing to validate: no JSON
        return problem(request, 400, "malformed-body", "the body is not valid JSON", errors=errors)
    return problem(request, 422, "validation", "the request is not valid", errors=errors)


async def _http(request: Request, exc: Exception) -> Response:
    error = cast(StarletteHTTPException, exc)
    headers = dict(error.headers) if error.headers else {}
    if error.status_code == 405:
        # Starlette names the methods of the first route that matched the path; the
        # path may have more, in other routes.
        headers["Allow"] = allowed_methods(request)
        if request.method == "OPTIONS":
            return Response(status_code=204, headers=headers)
    return problem(request, error.status_code, "about:blank", str(error.detail), headers=headers)


def allowed_methods(request: Request) -> str:
    """Every method some route serves at the request's path, OPTIONS included: the
    router is asked, as for a request, whether it has a route for each method."""
    routes = request.app.router.routes
    allowed = {"OPTIONS"}
    for method in _METHODS:
        probe = {**request.scope, "method": method}
        if any(route.matches(probe)[0] is Match.FULL for route in routes):
            allowed.add(method)
    return ", ".join(sorted(allowed))


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    retry_after = error.retry_after if isinstance(error, DatabaseUnavailable) else 5
    log.warning("database unavailable: %s", type(error).__name__)
    db = getattr(request.app.state, "db", None)
    if isinstance(error, PoolTimeoutError) and db is not None:
        db.counters.checkout_timeouts += 1
    return problem(
        request,
        503,
        "database-unavailable",
        "the database is unavailable; retry later",
        headers={"Retry-After": str(retry_after)},
    )


async def _database(request: Request, exc: Exception) -> JSONResponse:
    error = cast(DBAPIError, exc)
    if violation(error) is not None:  # a write the services did not translate
        log.warning("untranslated constraint violation: %s", type(error).__name__)
        return await _domain(request, constraint_error(error))
    refused = _refused(error)
    if refused is not None:  # the request's input: the service and the database are fine
        log.info("the database refused a value: %s", type(error.orig).__name__)
        return problem(request, 422, "invalid-data", f"the database refused a value: {refused}")
    if _is_unavailable(error):
        return await _unavailable(request, error)
    return await unexpected(request, error)


def _refused(error: DBAPIError) -> str | None:
    """Why the database or its driver refused a value the request carried, or None."""
    if isinstance(error.orig, UnicodeError):
        return "a text is not valid Unicode (it holds an unpaired surrogate)"
    if isinstance(error.orig, OverflowError):
        return "a number is out of the database's range"
    return refused_value(error)


async def unexpected(request: Request, error: Exception) -> JSONResponse:
    """The answer to an exception nothing else handled (`RequestIdMiddleware` calls it)."""
    log.exception("unhandled error", exc_info=error)
    return problem(request, 500, "internal", "an internal error occurred; it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain)
    app.add_exception_handler(Unauthenticated, _unauthenticated)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(ProviderUnavailable, _provider_unavailable)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DatabaseUnavailable, _unavailable)
    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(PoolTimeoutError, _unavailable)
    app.add_exception_handler(OSError, _unavailable)
    app.add_exception_handler(TimeoutError, _unavailable)
    for lost in LOST_CONNECTION:  # the driver's own, where SQLAlchemy does not wrap them
        app.add_exception_handler(lost, _unavailable)
    app.add_exception_handler(Exception, unexpected)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problems a route can answer with."""
    return {
        status: {
            "model": Problem,
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_JSON: {}},
        }
        for status in statuses
    }
