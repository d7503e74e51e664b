"""`App` and `Routes` take routers in as FastAPI's own `include_router` would, route by route."""

from typing import Annotated

import pytest
from fastapi import APIRouter, Depends, FastAPI, Response
from fastapi.routing import APIRoute
from httpx import ASGITransport, AsyncClient
from pydantic import BaseModel
from service.kit.http.direct import DirectRoute
from service.kit.http.routes import App, Routes
from starlette.routing import NoMatchFound


class Item(BaseModel):
    name: str
    size: int = 0


async def caller(response: Response) -> str:
    response.headers["X-Caller"] = "real"
    return "real"


async def inclusion(response: Response) -> None:
    response.headers["X-Included"] = "yes"


Caller = Annotated[str, Depends(caller)]


def items_router() -> APIRouter:
    """Routes with most of what a route can declare, under a router's own options."""
    router = APIRouter(prefix="/items", tags=["items"], responses={418: {"description": "tea"}})

    @router.get("", summary="Every item")
    async def list_items(who: Caller, size: int = 10) -> list[Item]:
        return [Item(name=who, size=size)]

    @router.post("", status_code=201, response_model=Item, responses={409: {}})
    async def create_item(item: Item) -> object:
        return item

    @router.get("/{item_id}", deprecated=True, response_model_exclude_defaults=True)
    async def get_item(item_id: int) -> Item:
        return Item(name=str(item_id))

    @router.delete("/{item_id}", include_in_schema=False, status_code=204)
    async def delete_item(item_id: int) -> None:
        return None

    return router


def app_with(app: FastAPI, api: APIRouter) -> FastAPI:
    api.include_router(
        items_router(), tags=["shop"], dependencies=[Depends(inclusion)], responses={503: {}}
    )
    app.include_router(api)
    return app


async def answers(app: FastAPI) -> list[tuple[int, str, str | None, str | None]]:
    calls = [("GET", "/v1/items?size=3"), ("POST", "/v1/items"), ("GET", "/v1/items/7")]
    calls += [("DELETE", "/v1/items/7"), ("GET", "/v1/items?size=x"), ("PUT", "/v1/items")]
    seen = []
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        for method, path in calls:
            body = {"name": "kettle"} if method == "POST" else None
            response = await client.request(method, path, json=body)
            who, included = response.headers.get("x-caller"), response.headers.get("x-included")
            seen.append((response.status_code, response.text, who, included))
    return seen


async def test_the_api_answers_and_documents_as_fastapis_include_router_would() -> None:
    taken_in = app_with(App(), Routes(prefix="/v1"))
    branched = app_with(FastAPI(), APIRouter(prefix="/v1"))
    assert all(type(route) is DirectRoute for route in taken_in.routes[-4:])
    assert taken_in.openapi() == branched.openapi()
    assert await answers(taken_in) == await answers(branched)
    operation = taken_in.openapi()["paths"]["/v1/items"]["post"]
    assert operation["tags"] == ["shop", "items"]
    assert set(operation["responses"]) >= {"201", "409", "418", "503"}


def test_the_routes_are_its_own_under_its_prefix() -> None:
    api = Routes(prefix="/v1")
    api.include_router(items_router(), prefix="/shop")
    assert all(type(route) is APIRoute for route in api.routes)
    paths = sorted({route.path for route in api.routes if isinstance(route, APIRoute)})
    assert paths == ["/v1/shop/items", "/v1/shop/items/{item_id}"]


async def test_an_inclusion_with_other_options_is_left_to_fastapi() -> None:
    api = Routes(prefix="/v1")
    api.include_router(items_router(), deprecated=True)
    assert not any(type(route) is APIRoute for route in api.routes)
    app = App()
    app.include_router(api)
    assert app.openapi()["paths"]["/v1/items"]["post"]["deprecated"] is True
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        assert (await client.get("/v1/items/7")).json() == {"name": "7"}


async def test_dependency_overrides_reach_the_routes_taken_in() -> None:
    app = app_with(App(), Routes(prefix="/v1"))
    app.dependency_overrides[caller] = lambda: "override"
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        response = await client.get("/v1/items")
    assert response.json() == [{"name": "override", "size": 10}]
    assert "x-caller" not in response.headers


def test_url_path_for_finds_what_starlette_finds() -> None:
    taken_in = app_with(App(), Routes(prefix="/v1"))
    branched = app_with(FastAPI(), APIRouter(prefix="/v1"))
    for app in (taken_in, branched):

        @app.get("/v1/items/{item_id}/again")  # a second route of the same name
        async def get_item(item_id: int, again: bool = True) -> None:
            return None

    asked = [("get_item", {"item_id": 3}), ("list_items", {}), ("create_item", {})]
    for name, params in asked:
        assert taken_in.url_path_for(name, **params) == branched.url_path_for(name, **params)
    for name, params in [("get_item", {"id": 3}), ("nothing", {})]:
        with pytest.raises(NoMatchFound):
            taken_in.url_path_for(name, **params)
    taken_in.add_api_route("/later/{key}", get_item, name="later")
    assert taken_in.url_path_for("later", key="k") == "/later/k"
