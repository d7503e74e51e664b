"""Everything the soak knows about the rendered service's API and tables, in one place.

The soak's clients (`soak_load.py`) build every request here and read every answer
here, and the final check (`bench/soak.py`) reads the rows back with the query here:
when the service's routes, headers, bodies or columns change, this module alone
changes. It targets the default render: projects under /api/v1/projects, optimistic
locking by `version` on PATCH, soft delete, and the `X-Consistency-Token` that a write
answers with when replicas serve reads and that a read sends back to see that write.

The HTTP client is a small keep-alive HTTP/1.1 client on asyncio streams, so that the
load generator costs the two cores little next to the service it loads.
"""

import asyncio
import json
from dataclasses import dataclass
from typing import Any

BASE = "/api/v1/projects"
READY = "/health/ready"
TOKEN = "X-Consistency-Token"
PAGE_SIZE = 20
PAGES = 50  # list pages asked for at random: 1..PAGES


@dataclass(frozen=True)
class State:
    """What a client last saw acknowledged for one project; `deleted`: a delete was."""

    name: str
    slug: str
    description: str
    version: int
    deleted: bool = False

    def as_list(self) -> list[Any]:
        return [self.name, self.slug, self.description, self.version, self.deleted]


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: dict[str, Any] | None = None


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def token(self) -> str | None:
        return self.headers.get(TOKEN.lower())


def create(slug: str, name: str, description: str) -> Request:
    return Request("POST", BASE, {"name": name, "slug": slug, "description": description})


def update(key: str, version: int, name: str, description: str) -> Request:
    """A PATCH with the version the client last saw acknowledged (optimistic locking)."""
    return Request(
        "PATCH", f"{BASE}/{key}", {"version": version, "name": name, "description": description}
    )


def delete(key: str) -> Request:
    return Request("DELETE", f"{BASE}/{key}")


def get(key: str) -> Request:
    return Request("GET", f"{BASE}/{key}")


def list_page(page: int) -> Request:
    return Request("GET", f"{BASE}?size={PAGE_SIZE}&page={page}")


def cursor_page(cursor: str | None) -> Request:
    query = f"size={PAGE_SIZE}" + (f"&cursor={cursor}" if cursor else "")
    return Request("GET", f"{BASE}/cursor?{query}")


def next_cursor(response: Response) -> str | None:
    value = response.json().get("next_cursor")
    return str(value) if value else None


def key_of(response: Response) -> str:
    """The id of a project, from a create's or an update's answer."""
    return str(response.json()["id"])


def state_of(response: Response) -> State:
    """A project's acknowledged content, from a create's, update's or get's answer."""
    data = response.json()
    return State(data["name"], data["slug"], data["description"], int(data["version"]))


# Created (201), changed (200), deleted (204): the answers that acknowledge a write.
ACKNOWLEDGED = {"POST": 201, "PATCH": 200, "DELETE": 204}

# The final check reads every project the run's clients wrote (their slugs share its
# prefix) straight from the primary: `deleted_at` is the soft delete's mark.
ROWS_QUERY = (
    "SELECT id::text, name, slug, description, version, deleted_at IS NOT NULL"
    " FROM project WHERE slug LIKE %s"
)


def row_state(row: tuple[Any, ...]) -> tuple[str, State]:
    key, name, slug, description, version, deleted = row
    return key, State(name, slug, description, int(version), bool(deleted))


class HttpError(Exception):
    """No complete answer: the connection failed, closed, or the answer was malformed."""


class Connection:
    """One keep-alive HTTP/1.1 connection to the service on 127.0.0.1, reopened as needed."""

    def __init__(self, port: int, timeout: float) -> None:
        self.port = port
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def send(self, request: Request, headers: dict[str, str] | None = None) -> Response:
        """One request; HttpError or TimeoutError when no complete answer came."""
        try:
            return await asyncio.wait_for(self._exchange(request, headers or {}), self.timeout)
        except TimeoutError:
            self.close()
            raise
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            self.close()
            raise HttpError(f"{type(e).__name__}: {e}") from e

    async def _exchange(self, request: Request, headers: dict[str, str]) -> Response:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self._reader is not None
        body = b"" if request.body is None else json.dumps(request.body).encode()
        lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if request.body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        found: dict[str, str] = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                found[name.strip().lower()] = value.strip()
        if found.get("transfer-encoding", "").lower() == "chunked":
            content = await self._chunks()
        else:
            content = await self._reader.readexactly(int(found.get("content-length", "0")))
        if found.get("connection", "").lower() == "close":
            self.close()
        return Response(status, found, content)

    async def _chunks(self) -> bytes:
        assert self._reader is not None
        parts = []
        while True:
            size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
            parts.append((await self._reader.readexactly(size + 2))[:-2])  # data, CRLF
            if size == 0:
                return b"".join(parts)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None
