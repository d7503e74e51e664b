import uuid
from typing import Any

from httpx import AsyncClient

from .test_projects import PROJECTS
from .test_projects import assert_problem
from .test_projects import create

TASKS = "/api/v1/tasks"


async def test_task_lifecycle(client: AsyncClient) -> None:
    project = await create(client)
    url = f"{PROJECTS}/{project['id']}/tasks"
    response = await client.post(url, json={"title": "Write tests", "priority": 3})
    assert response.status_code == 201
    task = response.json()
    assert response.headers["location"] == f"{TASKS}/{task['id']}"
    assert task["status"] == "todo" and task["project_id"] == project["id"]
    assert (await client.get(f"{TASKS}/{task['id']}")).json() == task
    moved = await client.patch(f"{TASKS}/{task['id']}", json={"version": 1, "status": "doing"})
    assert moved.status_code == 200 and moved.json()["status"] == "doing"
    listing = (await client.get(url, params={"status": "doing"})).json()
    assert [t["id"] for t in listing["items"]] == [task["id"]]
    assert (await client.get(url, params={"status": "done"})).json()["total"] == 0
    assert (await client.delete(f"{TASKS}/{task['id']}")).status_code == 204
    assert (await client.get(url)).json()["total"] == 0
    assert (await client.post(f"{TASKS}/{task['id']}/restore")).status_code == 200


async def test_task_errors(client: AsyncClient) -> None:
    project = await create(client)
    url = f"{PROJECTS}/{project['id']}/tasks"
    await client.post(url, json={"title": "Same"})
    dup = assert_problem(await client.post(url, json={"title": "Same"}), 409, "conflict")
    assert dup["detail"] == "this project already has a task with this title"
    missing = f"{PROJECTS}/{uuid.uuid4()}/tasks"
    assert_problem(await client.post(missing, json={"title": "Orphan"}), 404, "not-found")
    assert_problem(await client.get(missing), 404, "not-found")
    bad: list[dict[str, Any]] = [
        {"title": "x", "priority": 6},
        {"title": "x", "status": "blocked"},
        {"title": "x", "due_at": "2030-01-01T00:00:00"},
        {"title": ""},
    ]
    for body in bad:
        assert_problem(await client.post(url, json=body), 422, "validation")
    assert_problem(await client.get(url, params={"status": "nope"}), 422, "validation")
