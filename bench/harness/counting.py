"""Round trips and statements per request, counted on the wire, and the shapes check.

Requests are sent one at a time, after a warm-up that fills the apps' prepared
statement caches, to apps whose database URL points at the counting relay
(`wire.WireCounter`): with one request in flight, every message the relay sees
belongs to it, so totals divided by the number of requests are exact.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import count, cycle

from .endpoints import BASE, fetch, with_positions
from .wire import WireCounter

Request = tuple[str, str, bytes | None]


@dataclass(frozen=True)
class Counted:
    requests: int
    round_trips: float
    statements: float
    prepares: float
    new_connections: int
    kinds: dict[str, float]  # statements per request, by kind
    texts: dict[str, float]  # statements per request, by SQL text

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "round_trips": self.round_trips,
            "statements": self.statements,
            "prepares": self.prepares,
            "new_connections": self.new_connections,
            "kinds": self.kinds,
            "texts": self.texts,
        }


def gets(paths: list[str]) -> Iterator[Request]:
    return (("GET", path, None) for path in cycle(paths))


def creates(prefix: str) -> Iterator[Request]:
    for n in count(1):
        slug = f"{prefix}-{n}"
        body = {"name": f"Count {slug}", "slug": slug, "description": "counted"}
        yield "POST", BASE, json.dumps(body).encode()


def measure(
    counter: WireCounter, port: int, requests: Iterator[Request], *, warmup: int, n: int
) -> Counted:
    def send(k: int) -> None:
        for _ in range(k):
            method, path, body = next(requests)
            status, payload, _ = fetch(port, method, path, body)
            if status >= 400:
                raise RuntimeError(f"{method} {path} -> {status}: {payload[:300]!r}")

    send(warmup)
    counter.reset()
    send(n)
    seen = counter.snapshot()

    def per(value: int) -> float:
        return round(value / n, 3)

    return Counted(
        requests=n,
        round_trips=per(seen.round_trips),
        statements=per(seen.statements),
        prepares=per(seen.prepares),
        new_connections=seen.connections,
        kinds={kind: per(v) for kind, v in sorted(seen.kinds.items())},
        texts={text: per(v) for text, v in seen.texts.most_common()},
    )


def _strip_cursor(body: dict[str, object]) -> dict[str, object]:
    # Cursors are opaque and signed by each app: compare that both have one, not its bytes.
    return {**body, "next_cursor": body.get("next_cursor") is not None}


def _strip_created(body: dict[str, object]) -> dict[str, object]:
    # New rows differ in id, slug and times: compare the fields and their types.
    return {key: type(value).__name__ for key, value in body.items()}


def compare_shapes(
    service_port: int, floor_port: int, some_id: str, prefix: str
) -> dict[str, dict[str, object]]:
    """Fetch the same resources from both apps and say whether the JSON is the same."""
    checks: list[tuple[str, Request, Request, Callable[[dict[str, object]], object]]] = [
        ("get", ("GET", f"{BASE}/{some_id}", None), ("GET", f"{BASE}/{some_id}", None), dict),
        (
            "list_offset",
            ("GET", f"{BASE}?size=5&page=3", None),
            ("GET", f"{BASE}?size=5&page=3", None),
            dict,
        ),
        (
            "list_cursor",
            ("GET", f"{BASE}/cursor?size=5", None),
            ("GET", f"{BASE}/cursor?size=5", None),
            _strip_cursor,
        ),
        (
            "with_tasks",
            ("GET", f"{BASE}/with-tasks?size=3&page=2", None),
            ("GET", f"{BASE}/with-tasks?size=3&page=2", None),
            with_positions,
        ),
    ]
    created = iter(creates(prefix))
    checks.append(("create", next(created), next(created), _strip_created))
    results: dict[str, dict[str, object]] = {}
    for name, service_request, floor_request, normal in checks:
        s_status, s_body, _ = fetch(service_port, *service_request)
        f_status, f_body, _ = fetch(floor_port, *floor_request)
        same = s_status == f_status and normal(json.loads(s_body)) == normal(json.loads(f_body))
        results[name] = {"identical": same, "status": [s_status, f_status]}
        if not same:
            results[name]["service"] = s_body[:400].decode(errors="replace")
            results[name]["floor"] = f_body[:400].decode(errors="replace")
    return results
