"""Routers joined route by route: the app's routes stay one flat list.

Since FastAPI 0.137, `include_router` keeps the included router as a branch that every
request walks: the path is matched twice at each level, and `url_path_for` walks it
again. With the API's routers two levels down, that walk took a sixth of a get's CPU
(6% with the routes flat). `App` and `Routes` take the routes in instead, once, as
FastAPI did before: each route is rebuilt exactly as its router built it, under the
prefix and with the tags, dependencies and responses the inclusion adds. A request then
meets the routes themselves, and so does code that reads `app.routes`; `App.url_path_for`
finds a route by its name directly. An inclusion with any other option, or of a router
holding more than plain routes, is left to FastAPI.
"""

import inspect
from typing import Any

from fastapi import APIRouter
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import URLPath
from starlette.routing import NoMatchFound
from starlette.routing import Route
from starlette.types import ASGIApp

from .direct import DirectRoute
from .middleware import SecurityHeaders

# What a route is built from; each is also an attribute of the route built.
_BUILT_FROM = [
    name
    for name in inspect.signature(APIRouter.add_api_route).parameters
    if name not in {"self", "path", "endpoint", "route_class_override"}
]
_TAKEN_IN = {"tags", "dependencies", "responses"}


class Routes(APIRouter):
    """An `APIRouter` that takes in the routes of the routers it includes."""

    def include_router(self, router: APIRouter, *, prefix: str = "", **options: Any) -> None:
        if not take_in(self, router, prefix, options):
            super().include_router(router, prefix=prefix, **options)


class App(FastAPI):
    """A `FastAPI` app that takes in the routes of the routers it includes, each a
    `DirectRoute` (the kit's dependencies called directly)."""

    _by_name: dict[str, list[Route]]
    _indexed = -1  # how many routes the app had when `_by_name` was built (routes are
    # added at start-up, never replaced)

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__(*args, **options)
        self.router.route_class = DirectRoute

    def include_router(self, router: APIRouter, *, prefix: str = "", **options: Any) -> None:
        if not take_in(self.router, router, prefix, options):
            super().include_router(router, prefix=prefix, **options)

    def build_middleware_stack(self) -> ASGIApp:
        """Every middleware, with `SecurityHeaders` outside them all: outside Starlette's
        last-resort 500 too, which no added middleware can wrap."""
        return SecurityHeaders(super().build_middleware_stack())

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        """The path of the route called `name`, as Starlette finds it, without trying every
        route before it in turn (each refusal raises): a 201's `Location` costs a lookup."""
        if self._indexed != len(self.routes):
            self._index()
        for route in self._by_name.get(name, ()):
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        return super().url_path_for(name, **path_params)

    def _index(self) -> None:
        # Only a flat list of plain routes is indexed: for a branch or a mount, where a
        # name may lie further down, Starlette's own search runs.
        routes = [route for route in self.routes if isinstance(route, Route)]
        self._by_name = {}
        if len(routes) == len(self.routes):
            for route in routes:
                self._by_name.setdefault(route.name, []).append(route)
        self._indexed = len(self.routes)


def take_in(into: APIRouter, router: APIRouter, prefix: str, options: dict[str, Any]) -> bool:
    """Add `router`'s routes to `into` as its own; False (nothing added) if they cannot be."""
    routes = [route for route in router.routes if type(route) is APIRoute]
    if set(options) - _TAKEN_IN or len(routes) < len(router.routes):
        return False
    for route in routes:
        built = {name: getattr(route, name) for name in _BUILT_FROM}
        built["tags"] = [*(options.get("tags") or ()), *route.tags]
        built["dependencies"] = [*(options.get("dependencies") or ()), *route.dependencies]
        built["responses"] = {**(options.get("responses") or {}), **route.responses}
        into.add_api_route(prefix + route.path, route.endpoint, **built)
    return True
