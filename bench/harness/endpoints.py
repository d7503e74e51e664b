"""The endpoints under load, their targets, and the request lists each app is sent.

Reads pick at random among many URLs (2,000 ids; the first 50 pages) so that no single
row or page is all the database serves; both apps get the same lists, except cursors,
which each app issues and signs itself and which are therefore collected from each.
"""

import base64
import http.client
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BASE = "/api/v1/projects"
PAGES = 50
PAGE_SIZE = 20


@dataclass(frozen=True)
class Endpoint:
    key: str
    title: str
    # The service's server CPU per request over the floor's in the full run of
    # 2026-11-28 (template 3b130e5): issue 17's target 3 is to come in below it.
    cpu_target: float | None


ENDPOINTS = (
    Endpoint("get", "get one by id", 6.65),
    Endpoint("list_offset", "list page of 20 (offset, with total)", 5.61),
    Endpoint("list_cursor", "list page of 20 (cursor)", 6.11),
    Endpoint("with_tasks", "20 parents with their children", 6.58),
    Endpoint("create", "create one", 9.60),
)


def fetch(
    port: int, method: str, path: str, body: bytes | None = None
) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        headers = {"Content-Type": "application/json"} if body is not None else {}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), dict(response.getheaders())
    finally:
        conn.close()


def cursor_paths(port: int, pages: int = PAGES, size: int = PAGE_SIZE) -> list[str]:
    """Walk an app's cursor chain from the first page and return one URL per page."""
    paths = [f"{BASE}/cursor?size={size}"]
    while len(paths) < pages:
        status, body, _ = fetch(port, "GET", paths[-1])
        if status != 200:
            raise RuntimeError(f"cursor walk got HTTP {status} from port {port}: {body[:200]!r}")
        cursor = json.loads(body)["next_cursor"]
        if cursor is None:
            break
        paths.append(f"{BASE}/cursor?size={size}&cursor={cursor}")
    return paths


def read_paths(endpoint: str, ids: list[str], size: int = PAGE_SIZE) -> list[str]:
    """URL lists of the read endpoints whose URLs are the same for every app."""
    if endpoint == "get":
        return [f"{BASE}/{key}" for key in ids]
    if endpoint == "list_offset":
        return [f"{BASE}?size={size}&page={n}" for n in range(1, PAGES + 1)]
    if endpoint == "with_tasks":
        return [f"{BASE}/with-tasks?size={size}&page={n}" for n in range(1, PAGES + 1)]
    raise ValueError(endpoint)


def write_paths(directory: Path, name: str, paths: list[str]) -> Path:
    path = directory / f"{name}.txt"
    path.write_text("\n".join(paths) + "\n", encoding="utf-8")
    return path


def with_positions(body: Any) -> Any:
    """A /with-tasks page with each `tasks_next` read as the position it holds: apps sign
    the same position in JSON of their own spacing, so the bytes differ, the position
    (the sort and the last task's created_at and id) must not."""
    if not isinstance(body, dict) or not isinstance(body.get("items"), list):
        return body
    items = []
    for item in body["items"]:
        cursor = item.get("tasks_next") if isinstance(item, dict) else None
        if isinstance(cursor, str):
            payload = cursor.partition(".")[0]
            position = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            item = {**item, "tasks_next": position}
        items.append(item)
    return {**body, "items": items}
