"""The floor: the rendered service's read and create endpoints with nothing in between.

Starlette routing, one raw asyncpg pool and orjson: the same SQL against the same
tables, the same JSON bodies (the benchmark compares them before it measures), and
none of the service's layers (dependency injection, ORM, sessions, validation models,
units of work). Its cost per request is what the hardware, the ASGI server and the
driver allow; the service's cost divided by it is the figure that survives a noisy
machine, because both are measured side by side in the same run.

Run it like the service: `uvicorn floor_app:app --app-dir bench --no-access-log`,
with FLOOR_DATABASE_URL=postgresql://user@host:port/db and CURSOR_SECRET.
"""

import base64
import hashlib
import hmac
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PROJECT = "id, name, slug, description, owner, version, created_at, updated_at, deleted_at"
TASK = (
    "id, project_id, title, status, priority, due_at, version, created_at, updated_at, deleted_at"
)
# The statements the service's ORM emits, written out by hand (ORDER BY adds the primary
# key as the tiebreaker, as the service's repositories do).
GET_PROJECT = f"SELECT {PROJECT} FROM project WHERE id = $1 AND deleted_at IS NULL"
COUNT_LIVE = "SELECT count(*) FROM project WHERE deleted_at IS NULL"
PAGE = (
    f"SELECT {PROJECT} FROM project WHERE deleted_at IS NULL"
    " ORDER BY created_at, id LIMIT $1 OFFSET $2"
)
FIRST_CURSOR_PAGE = (
    f"SELECT {PROJECT} FROM project WHERE deleted_at IS NULL ORDER BY created_at, id LIMIT $1"
)
NEXT_CURSOR_PAGE = (
    f"SELECT {PROJECT} FROM project WHERE deleted_at IS NULL AND (created_at, id) > ($2, $3)"
    " ORDER BY created_at, id LIMIT $1"
)
# Each project's first $2 live tasks, oldest first, with how many live tasks it has: one
# statement for any page size (an array parameter instead of an IN list), as the service
# bounds what a listing of parents carries.
FIRST_TASKS = (
    f"SELECT {TASK}, in_project FROM (SELECT {TASK},"
    " row_number() OVER (PARTITION BY project_id ORDER BY created_at, id) AS rank_in_project,"
    " count(*) OVER (PARTITION BY project_id) AS in_project"
    " FROM task WHERE project_id = ANY($1::uuid[]) AND deleted_at IS NULL) AS ranked"
    " WHERE rank_in_project <= $2 ORDER BY project_id, rank_in_project"
)
INSERT_PROJECT = (
    "INSERT INTO project (id, name, slug, description, version)"
    f" VALUES ($1, $2, $3, $4, 1) RETURNING {PROJECT}"
)

MAX_PAGE_SIZE = 100
MAX_CHILDREN_PER_PARENT = 20  # the service's default MAX_CHILDREN_PER_PARENT
SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")


class JSON(Response):
    """orjson with a `Z` for UTC, which is how pydantic writes the service's datetimes."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_UTC_Z, default=str)


def problem(status: int, detail: str) -> JSON:
    return JSON({"status": status, "detail": detail}, status_code=status)


def uuid7() -> uuid.UUID:
    """Time-ordered keys like the service's, so both apps insert at the index's right edge."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = (value & ~(0xF << 76)) | (0x7 << 76)  # version 7 over 4 of the 80 random bits
    value = (value & ~(0x3 << 62)) | (0x2 << 62)  # RFC 9562 variant over 2 more
    return uuid.UUID(int=value)


def row_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    return dict(row.items())


def page_args(request: Request) -> tuple[int, int] | JSON:
    try:
        size = int(request.query_params.get("size", "20"))
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        return problem(422, "size and page must be integers")
    if not 1 <= size <= MAX_PAGE_SIZE or not 1 <= page <= 1_000_000:
        return problem(422, "size or page out of range")
    return size, page


class Cursors:
    """The service's cursor format: base64url JSON of the position, then an HMAC of it."""

    def __init__(self, secret: str) -> None:
        self.key = secret.encode()

    def _sign(self, payload: bytes) -> str:
        digest = hmac.new(self.key, payload, hashlib.sha256).digest()[:12]
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def encode(self, created_at: datetime, key: uuid.UUID) -> str:
        payload = orjson.dumps({"s": "created_at", "v": [created_at.isoformat(), str(key)]})
        return base64.urlsafe_b64encode(payload).decode().rstrip("=") + "." + self._sign(payload)

    def decode(self, cursor: str) -> tuple[datetime, uuid.UUID] | None:
        body, _, signature = cursor.partition(".")
        try:
            payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if not hmac.compare_digest(signature, self._sign(payload)):
                return None
            data = orjson.loads(payload)
            if data.get("s") != "created_at":
                return None
            return datetime.fromisoformat(data["v"][0]), uuid.UUID(data["v"][1])
        except (ValueError, KeyError, TypeError):
            return None


def pool(request: Request) -> asyncpg.Pool:
    found: asyncpg.Pool = request.app.state.pool
    return found


async def get_project(request: Request) -> Response:
    try:
        key = uuid.UUID(request.path_params["project_id"])
    except ValueError:
        return problem(422, "project_id is not a UUID")
    row = await pool(request).fetchrow(GET_PROJECT, key)
    if row is None:
        return problem(404, f"project {key} was not found")
    return JSON(row_dict(row))


async def list_projects(request: Request) -> Response:
    args = page_args(request)
    if isinstance(args, JSON):
        return args
    size, page = args
    async with pool(request).acquire() as conn:
        total = await conn.fetchval(COUNT_LIVE)
        rows = await conn.fetch(PAGE, size, (page - 1) * size)
    return JSON({"items": [row_dict(r) for r in rows], "total": total, "page": page, "size": size})


async def scroll_projects(request: Request) -> Response:
    args = page_args(request)
    if isinstance(args, JSON):
        return args
    size, _ = args
    cursors: Cursors = request.app.state.cursors
    cursor = request.query_params.get("cursor")
    if cursor is None:
        rows = await pool(request).fetch(FIRST_CURSOR_PAGE, size + 1)
    else:
        position = cursors.decode(cursor)
        if position is None:
            return problem(422, "cursor is malformed or was not issued by this service")
        rows = await pool(request).fetch(NEXT_CURSOR_PAGE, size + 1, *position)
    next_cursor = None
    if len(rows) > size:
        rows = rows[:size]
        next_cursor = cursors.encode(rows[-1]["created_at"], rows[-1]["id"])
    return JSON({"items": [row_dict(r) for r in rows], "next_cursor": next_cursor, "size": size})


async def list_projects_with_tasks(request: Request) -> Response:
    args = page_args(request)
    if isinstance(args, JSON):
        return args
    size, page = args
    cursors: Cursors = request.app.state.cursors
    async with pool(request).acquire() as conn:
        total = await conn.fetchval(COUNT_LIVE)
        projects = [row_dict(r) for r in await conn.fetch(PAGE, size, (page - 1) * size)]
        by_id: dict[uuid.UUID, dict[str, Any]] = {}
        for project in projects:
            by_id[project["id"]] = project
            project.update(tasks=[], tasks_total=0, tasks_next=None)
        if projects:
            for row in await conn.fetch(FIRST_TASKS, list(by_id), MAX_CHILDREN_PER_PARENT):
                task = row_dict(row)
                project = by_id[task["project_id"]]
                project["tasks_total"] = task.pop("in_project")
                project["tasks"].append(task)
    for project in projects:
        tasks = project["tasks"]
        if len(tasks) < project["tasks_total"]:  # the rest: by cursor, from the last one
            project["tasks_next"] = cursors.encode(tasks[-1]["created_at"], tasks[-1]["id"])
    return JSON({"items": projects, "total": total, "page": page, "size": size})


def parse_create(body: bytes) -> tuple[str, str, str] | str:
    """The service's ProjectCreate rules, checked by hand: returns the values or an error."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return "body is not JSON"
    if not isinstance(data, dict) or set(data) - {"name", "slug", "description"}:
        return "body must be an object with name, slug and description only"
    name, slug, description = data.get("name"), data.get("slug"), data.get("description", "")
    if not isinstance(name, str) or not isinstance(slug, str) or not isinstance(description, str):
        return "name, slug and description must be strings"
    name, slug, description = name.strip(), slug.strip(), description.strip()
    if not 1 <= len(name) <= 200 or not 1 <= len(slug) <= 100 or len(description) > 10_000:
        return "a field is too long or empty"
    if not SLUG.fullmatch(slug):
        return "slug must be lower-case words joined by hyphens"
    return name, slug, description


async def create_project(request: Request) -> Response:
    values = parse_create(await request.body())
    if isinstance(values, str):
        return problem(422, values)
    try:
        row = await pool(request).fetchrow(INSERT_PROJECT, uuid7(), *values)
    except asyncpg.UniqueViolationError:
        return problem(409, "a project with this slug already exists")
    assert row is not None
    project = row_dict(row)
    return JSON(project, status_code=201, headers={"Location": f"/api/v1/projects/{row['id']}"})


async def health(_: Request) -> Response:
    return JSON({"status": "ok"})


async def _keep_session(_: asyncpg.Connection) -> None:
    """No reset query on release: this app never changes session state (no SET, LISTEN,
    advisory lock or cursor), so asyncpg's default reset would be a wasted round trip."""


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    server_settings = {
        "application_name": "bench-floor",
        "statement_timeout": "30000",
        "idle_in_transaction_session_timeout": "60000",
    }
    app.state.pool = await asyncpg.create_pool(
        os.environ["FLOOR_DATABASE_URL"],
        min_size=1,
        max_size=int(os.environ.get("FLOOR_POOL_MAX", "40")),
        # The benchmark shortens this so that an idle floor gives its connections back
        # while the service is loaded: three apps' pools must fit in max_connections.
        max_inactive_connection_lifetime=float(os.environ.get("FLOOR_POOL_IDLE_SECONDS", "300")),
        reset=_keep_session,
        server_settings=server_settings,
    )
    app.state.cursors = Cursors(os.environ["CURSOR_SECRET"])
    try:
        yield
    finally:
        await app.state.pool.close()


app = Starlette(
    routes=[
        Route("/health", health),
        Route("/api/v1/projects", list_projects, methods=["GET"]),
        Route("/api/v1/projects", create_project, methods=["POST"]),
        Route("/api/v1/projects/cursor", scroll_projects),
        Route("/api/v1/projects/with-tasks", list_projects_with_tasks),
        Route("/api/v1/projects/{project_id}", get_project),
    ],
    lifespan=lifespan,
)
