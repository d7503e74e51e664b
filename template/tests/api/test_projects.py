import uuid
from typing import Any

import pytest
from httpx import AsyncClient

PROJECTS = "/api/v1/projects"


async def create(client: AsyncClient, **body: Any) -> dict[str, Any]:
    body = {"name": "Alpha", "slug": f"alpha-{uuid.uuid4().hex[:8]}", **body}
    response = await client.post(PROJECTS, json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


def assert_problem(response: Any, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["type"].endswith(kind)
    assert body["request_id"] == response.headers["x-request-id"]
    return body


async def test_create_get_list_round_trip(client: AsyncClient) -> None:
    created = await create(client, name="Round trip", description="d")
    assert created["version"] == 1 and created["deleted_at"] is None
    response = await client.get(f"{PROJECTS}/{created['id']}")
    assert response.status_code == 200 and response.json() == created
    listing = (await client.get(PROJECTS, params={"size": 100})).json()
    assert created in listing["items"] and listing["total"] >= 1


async def test_create_answers_with_its_location(client: AsyncClient) -> None:
    response = await client.post(PROJECTS, json={"name": "Located", "slug": "located"})
    assert response.headers["location"] == f"{PROJECTS}/{response.json()['id']}"


async def test_duplicate_slug_is_a_409(client: AsyncClient) -> None:
    await create(client, slug="twice")
    response = await client.post(PROJECTS, json={"name": "Again", "slug": "twice"})
    body = assert_problem(response, 409, "conflict")
    assert body["detail"] == "a project with this slug already exists"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "", "slug": "ok"}, "name"),
        ({"name": "x", "slug": "Not A Slug"}, "slug"),
        ({"name": "x"}, "slug"),
        ({"name": "x", "slug": "ok", "owner": "me"}, "owner"),
        ({"name": "x" * 201, "slug": "ok"}, "name"),
    ],
)
async def test_invalid_bodies_are_422_naming_the_field(
    client: AsyncClient, body: dict[str, Any], field: str
) -> None:
    problem = assert_problem(await client.post(PROJECTS, json=body), 422, "validation")
    assert [e["loc"][-1] for e in problem["errors"]] == [field]


async def test_malformed_json_is_a_422(client: AsyncClient) -> None:
    response = await client.post(
        PROJECTS, content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(response, 422, "validation")


async def test_unknown_and_malformed_ids(client: AsyncClient) -> None:
    assert_problem(await client.get(f"{PROJECTS}/{uuid.uuid4()}"), 404, "not-found")
    body = assert_problem(await client.get(f"{PROJECTS}/42"), 422, "validation")
    assert body["errors"][0]["loc"] == ["path", "project_id"]


@pytest.mark.parametrize(
    "params",
    [{"size": 0}, {"size": -1}, {"size": 10_000}, {"page": 0}, {"page": "x"}, {"sort": "slug"}],
)
async def test_bad_paging_is_a_422_never_a_500(client: AsyncClient, params: dict[str, Any]) -> None:
    assert_problem(await client.get(PROJECTS, params=params), 422, "")


async def test_partial_update_with_version(client: AsyncClient) -> None:
    project = await create(client)
    url = f"{PROJECTS}/{project['id']}"
    response = await client.patch(url, json={"version": 1, "name": "Renamed"})
    assert response.status_code == 200
    assert response.json()["name"] == "Renamed" and response.json()["version"] == 2
    assert response.json()["slug"] == project["slug"]
    stale = assert_problem(
        await client.patch(url, json={"version": 1, "name": "Lost"}), 409, "stale-version"
    )
    assert "since version 1" in stale["detail"] and "now at version 2" in stale["detail"]
    assert_problem(await client.patch(url, json={"name": "No version"}), 422, "validation")
    assert_problem(
        await client.patch(f"{PROJECTS}/{uuid.uuid4()}", json={"version": 1}), 404, "not-found"
    )


async def test_delete_is_soft_and_restore_brings_it_back(client: AsyncClient) -> None:
    project = await create(client)
    url = f"{PROJECTS}/{project['id']}"
    assert (await client.delete(url)).status_code == 204
    assert_problem(await client.get(url), 404, "not-found")
    assert_problem(await client.delete(url), 404, "not-found")
    restored = await client.post(f"{url}/restore")
    assert restored.status_code == 200 and restored.json()["deleted_at"] is None
    assert (await client.get(url)).status_code == 200


async def test_cursor_listing_walks_all_pages(client: AsyncClient) -> None:
    made = {(await create(client))["id"] for _ in range(7)}
    seen: list[str] = []
    params: dict[str, Any] = {"size": 3, "sort": "-created_at"}
    while True:
        page = (await client.get(f"{PROJECTS}/cursor", params=params)).json()
        seen.extend(item["id"] for item in page["items"])
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert made <= set(seen) and len(seen) == len(set(seen))


async def test_a_bad_cursor_is_a_422(client: AsyncClient) -> None:
    response = await client.get(f"{PROJECTS}/cursor", params={"cursor": "forged.cursor"})
    body = assert_problem(response, 422, "invalid-query")
    assert body["errors"][0]["loc"] == ["query", "cursor"]


async def test_projects_with_their_tasks(client: AsyncClient) -> None:
    project = await create(client)
    for title in ("one", "two"):
        await client.post(f"{PROJECTS}/{project['id']}/tasks", json={"title": title})
    page = (await client.get(f"{PROJECTS}/with-tasks", params={"size": 100})).json()
    mine = next(p for p in page["items"] if p["id"] == project["id"])
    assert sorted(t["title"] for t in mine["tasks"]) == ["one", "two"]
