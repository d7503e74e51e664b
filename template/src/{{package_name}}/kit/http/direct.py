"""Routes that call the kit's own dependencies directly, not through FastAPI's solver.

FastAPI solves every dependency of a route on every request with its general machinery:
a nested solve with its four parameter passes, a cache key, and the classification of
the callable (a generator? a coroutine? a security scheme?). The kit's dependencies (the
request's sessions, a page's size and number, the cursor codec) need none of it: each is
an `async def` of the request and at most some query parameters, marked `@direct`.

`DirectRoute` gives such a route a second handler in which the dependencies' query
parameters are validated with the route's own, in the same pass, and the dependencies
are called, in their order, just before the endpoint with the arguments FastAPI would
pass them. The route as declared is untouched (its OpenAPI document is built from it).
FastAPI's solver still answers, exactly as before, a request that any parameter fails
(so the errors, their order, and which dependencies ran come out as they always did),
every request while the app has `dependency_overrides` (tests swap the sessions that
way), and every route where calling directly could differ: a sync endpoint, one with a
dependency of the service's own (or one of the kit's twice), or parameter names that
would meet.
"""

import dataclasses
import functools
import inspect
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Coroutine
from typing import Any
from typing import TypeVar

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
Handler = Callable[[Request], Coroutine[Any, Any, Response]]

_DIRECT: set[Callable[..., Any]] = set()
# The endpoint's request argument, where the endpoint does not take the request itself.
_REQUEST = "kit_direct_request"


def direct(call: F) -> F:
    """Marks one of the kit's dependencies as one `DirectRoute` may call directly: an
    `async def` taking the request and query parameters only, no dependency of its own."""
    _DIRECT.add(call)
    return call


class _Raised(Exception):
    """A `RequestValidationError` raised by the endpoint or a dependency, not FastAPI's
    check of the parameters: it goes on as it was, and nothing runs again."""

    def __init__(self, error: RequestValidationError) -> None:
        self.error = error


# One dependency to call: the endpoint's argument it gives (None: a route's
# `dependencies=`), the callable, its own name for the request (None: it takes none), and
# its query parameters, by the names FastAPI validates them under.
_Call = tuple[str | None, Callable[..., Awaitable[Any]], str | None, tuple[str, ...]]


class DirectRoute(APIRoute):
    """An `APIRoute` that calls the kit's `@direct` dependencies itself (module doc)."""

    def get_route_handler(self) -> Handler:
        solved = super().get_route_handler()
        plan = _plan(self.dependant)
        if plan is None:
            return solved
        declared, self.dependant = self.dependant, plan
        try:
            called = super().get_route_handler()
        finally:
            self.dependant = declared
        overrides_from = self.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if getattr(overrides_from, "dependency_overrides", None):
                return await solved(request)
            try:
                return await called(request)
            except RequestValidationError:  # a parameter refused: nothing has run yet
                return await solved(request)
            except _Raised as raised:  # the endpoint's or a dependency's own
                raise raised.error from None

        return handler


def _plan(route: Dependant) -> Dependant | None:
    """The route's dependant with its `@direct` dependencies folded into its endpoint, or
    None where FastAPI's solver is kept."""
    endpoint = route.call
    if endpoint is None or not inspect.iscoroutinefunction(endpoint):
        return None
    chosen = route.dependencies
    calls = [d.call for d in chosen]
    # Every dependency the kit's, each once: then a refused parameter leaves nothing
    # that has run (FastAPI's solver answers it, and would otherwise run a dependency of
    # the service's own a second time), and no dependency is shared with another.
    if not chosen or not all(d.call in _DIRECT and _plain(d) for d in chosen):
        return None
    if len(set(calls)) < len(calls):
        return None
    own = [*route.path_params, *route.query_params, *route.header_params]
    own += [*route.cookie_params, *route.body_params]
    query = [*route.query_params, *(f for d in chosen for f in d.query_params)]
    if any(_is_model(field) for field in query):
        return None  # a query parameter model is read from all the query at once
    taken = {field.name for field in own}
    taken |= {name for name in (*_special_names(route), route.request_param_name) if name}
    for dependency in chosen:
        for field in dependency.query_params:
            others = {d.name for d in chosen if d is not dependency}
            if field.name in taken or field.name in others:
                return None
            taken.add(field.name)
    request = route.request_param_name or _REQUEST
    if request in taken and route.request_param_name is None:
        return None
    steps: tuple[_Call, ...] = tuple(
        (d.name, d.call, d.request_param_name, tuple(f.name for f in d.query_params))
        for d in chosen
        if d.call is not None  # always: each was chosen by its call
    )
    return dataclasses.replace(
        route,
        dependencies=[],
        query_params=[*(f for d in chosen for f in d.query_params), *route.query_params],
        request_param_name=request,
        call=_endpoint(endpoint, steps, request, keep_request=route.request_param_name is not None),
    )


def _endpoint(
    endpoint: Callable[..., Any], steps: tuple[_Call, ...], request_name: str, *, keep_request: bool
) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(endpoint)
    async def call(**values: Any) -> Any:
        request = values[request_name] if keep_request else values.pop(request_name)
        try:
            for name, dependency, takes_request, query in steps:
                arguments = {takes_request: request} if takes_request else {}
                for field in query:
                    arguments[field] = values.pop(field)
                given = await dependency(**arguments)
                if name is not None:
                    values[name] = given
            return await endpoint(**values)
        except RequestValidationError as error:
            raise _Raised(error) from None

    return call


def _plain(dependency: Dependant) -> bool:
    """Takes the request and query parameters only, and nothing FastAPI would add."""
    return not (
        dependency.dependencies
        or dependency.path_params
        or dependency.header_params
        or dependency.cookie_params
        or dependency.body_params
        or any(_special_names(dependency))
    )


def _special_names(dependant: Dependant) -> list[str | None]:
    return [
        dependant.websocket_param_name,
        dependant.http_connection_param_name,
        dependant.response_param_name,
        dependant.background_tasks_param_name,
        dependant.security_scopes_param_name,
    ]


def _is_model(field: Any) -> bool:
    annotation = getattr(field.field_info, "annotation", None)
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
