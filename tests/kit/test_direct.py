"""`DirectRoute` calls the kit's `@direct` dependencies itself: the same answers, errors,
OpenAPI and overrides as FastAPI's solver, without a solve per dependency."""

from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.dependencies import utils as dependency_utils
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel
from service.kit.errors import InvalidQuery
from service.kit.http.direct import DirectRoute, _plan, direct
from service.kit.http.problems import install_problem_handlers
from service.settings import Settings

calls: list[str] = []


@direct
async def limit(request: Request, size: Annotated[int, Query(ge=1, le=50)] = 20) -> int:
    calls.append("limit")
    if size == 13:
        raise InvalidQuery("size 13 is unlucky", field="size")
    return size + len(request.url.path) * 0


@direct
async def shelf(request: Request) -> str:
    calls.append("shelf")
    return str(request.app.title)


@direct
async def page(number: Annotated[int, Query(ge=1)] = 1) -> int:
    calls.append("page")
    return number


async def audited(who: Annotated[str, Depends(shelf)]) -> str:
    """A dependency of the caller's own that uses a marked one: FastAPI calls that once."""
    return f"audited {who}"


class Item(BaseModel):
    name: str


Limit = Annotated[int, Depends(limit)]
Shelf = Annotated[str, Depends(shelf)]
Page = Annotated[int, Depends(page)]


def app_of(route_class: type[APIRoute]) -> FastAPI:
    app = FastAPI(title="shop")
    app.router.route_class = route_class
    install_problem_handlers(app)

    @app.get("/items", dependencies=[Depends(page)])
    async def list_items(size: Limit, where: Shelf, kind: str = "any") -> dict[str, Any]:
        return {"size": size, "where": where, "kind": kind}

    @app.post("/items/{item_id}", status_code=201)
    async def take(item_id: int, request: Request, response: Response, size: Limit) -> object:
        response.headers["Location"] = f"/items/{item_id}"
        return {"item": item_id, "size": size, "path": request.url.path}

    @app.get("/audited")
    async def audit(where: Shelf, note: Annotated[str, Depends(audited)], number: Page) -> object:
        return [where, note, number]

    @app.put("/body", status_code=201)
    async def with_body(item: Item, size: Limit, response: Response) -> object:
        response.headers["Location"] = f"/body/{item.name}"
        return {"item": item.name, "size": size}

    @app.get("/sync")
    def sync_items(size: Limit) -> int:
        return size

    return app


REQUESTS = [
    ("GET", "/items"),
    ("GET", "/items?size=7&kind=new&number=3"),
    ("GET", "/items?size=0"),
    ("GET", "/items?size=x&number=0"),
    ("GET", "/items?size=13"),
    ("POST", "/items/4?size=9"),
    ("POST", "/items/x?size=0"),
    ("GET", "/audited?number=2"),
    ("GET", "/audited?number=0"),
    ("PUT", "/body?size=2"),
    ("PUT", "/body?size=0"),
    ("GET", "/sync?size=5"),
    ("GET", "/sync?size=99"),
]


async def answers(app: FastAPI) -> list[tuple[int, str, str | None, list[str]]]:
    seen = []
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        for method, path in REQUESTS:
            calls.clear()
            body = {"name": "kettle"} if path == "/body?size=2" else {"name": 7}
            response = await client.request(method, path, json=body if method == "PUT" else None)
            location = response.headers.get("location")
            seen.append((response.status_code, response.text, location, [*calls]))
    return seen


@pytest.fixture
def solves(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[object]]:
    """Every call of FastAPI's `solve_dependencies`, by the dependant it solved."""
    seen: list[object] = []
    real = dependency_utils.solve_dependencies

    async def counted(**arguments: Any) -> Any:
        seen.append(arguments["dependant"].call)
        return await real(**arguments)

    monkeypatch.setattr(dependency_utils, "solve_dependencies", counted)
    monkeypatch.setattr("fastapi.routing.solve_dependencies", counted)
    yield seen


async def test_answers_errors_and_calls_are_fastapis() -> None:
    direct_app, solved_app = app_of(DirectRoute), app_of(APIRoute)
    assert await answers(direct_app) == await answers(solved_app)
    assert direct_app.openapi() == solved_app.openapi()


async def test_marked_dependencies_are_not_solved_one_by_one(solves: list[object]) -> None:
    app = app_of(DirectRoute)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/items?size=3")
    assert response.json() == {"size": 3, "where": "shop", "kind": "any"}
    assert len(solves) == 1  # the route's own parameters; FastAPI's solver: 1 + 3
    assert calls[-3:] == ["page", "limit", "shelf"]  # in the route's order, as FastAPI's


async def test_overrides_replace_marked_dependencies() -> None:
    app = app_of(DirectRoute)
    app.dependency_overrides[shelf] = lambda: "elsewhere"
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/items")).json()["where"] == "elsewhere"
        del app.dependency_overrides[shelf]
        assert (await client.get("/items")).json()["where"] == "shop"


async def test_a_dependency_shared_with_another_is_called_once() -> None:
    app = app_of(DirectRoute)
    calls.clear()
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/audited")
    assert response.json() == ["shop", "audited shop", 1]
    assert calls.count("shelf") == 1


async def test_a_validation_error_the_endpoint_raises_is_not_run_again() -> None:
    app = app_of(DirectRoute)
    runs: list[int] = []

    @app.get("/raises")
    async def raises(size: Limit) -> None:
        runs.append(size)
        raise RequestValidationError([{"loc": ("query", "size"), "msg": "no", "type": "no"}])

    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/raises?size=4")
    assert response.status_code == 422 and runs == [4]


def test_routes_of_the_kits_dependencies_alone_are_called_directly() -> None:
    app = app_of(DirectRoute)
    direct = {
        route.name for route in app.routes if isinstance(route, APIRoute) and _plan(route.dependant)
    }
    assert direct == {"list_items", "take", "with_body"}  # not: a dependency of its own, sync


async def test_routes_that_ask_for_the_caller_and_a_permission_are_called_directly(
    solves: list[object], settings: Settings
) -> None:
    """Every route of the example domain asks for a permission, and some for the caller:
    the kit's auth dependencies are called directly too, and authenticate once."""
    from service.kit.auth.dependencies import CurrentPrincipal, require
    from service.kit.auth.principal import Principal, Unauthenticated

    app = app_of(DirectRoute)
    tokens: list[str] = []

    class Tokens:
        async def authenticate(self, token: str) -> Principal:
            tokens.append(token)
            if token != "good":
                raise Unauthenticated("not a token of ours")
            return Principal("ann", frozenset({"shop:read"}))

    @app.get("/mine", dependencies=[require("shop:read")])
    async def mine(caller: CurrentPrincipal, size: Limit) -> list[object]:
        return [caller.subject, size]

    @app.get("/admin", dependencies=[require("shop:admin")])
    async def admin() -> None:
        raise AssertionError("not for ann")

    (route,) = [r for r in app.routes if isinstance(r, APIRoute) and r.name == "mine"]
    assert _plan(route.dependant) is not None
    app.state.authenticator = Tokens()
    app.state.settings = settings  # the 401's realm
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        good = {"Authorization": "Bearer good"}
        assert (await client.get("/mine?size=4", headers=good)).json() == ["ann", 4]
        assert len(solves) == 1 and tokens == ["good"]  # one solve, one authentication
        assert (await client.get("/admin", headers=good)).status_code == 403
        bad = await client.get("/mine", headers={"Authorization": "Bearer bad"})
        assert bad.status_code == 401 and "WWW-Authenticate" in bad.headers
        assert (await client.get("/mine")).status_code == 401
