"""The soak's clients: mixed reads and writes, each write recorded in a ledger.

Each client owns the projects it creates, so its writes to one project follow each
other and the content each acknowledged write left is known exactly: the ledger keeps,
per project, the last acknowledged state and the states of the writes that got no
acknowledgement (a 5xx or no answer: they may have committed or not). A project with
such a write leaves the client's working set, so every later expectation about it is
exact. Reads of a client's own project send the consistency token of its last write
and must see the acknowledged state (read-your-writes through the replica).

Every request's latency goes into its time window; every answer the client did not
expect (a 5xx, no answer, a 4xx, a wrong body) is kept whole, with its start and end on
the monotonic clock that the sweeper's records share.
"""

import asyncio
import random
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from . import soak_api as api
from .soak_api import State

# How often each operation is picked; a client with no project of its own creates one.
MIX = {
    "create": 20,
    "update": 25,
    "delete": 8,
    "get_own": 17,
    "get_seeded": 10,
    "list": 12,
    "cursor": 8,
}
WORKING_SET = 200  # projects a client keeps writing to; older ones keep their last state


@dataclass
class Tracked:
    """One project a client wrote: what was acknowledged, and what may have committed."""

    slug: str
    key: str | None = None  # known once the create is acknowledged
    acked: State | None = None  # None: the create got no acknowledgement
    unacknowledged: list[State] = field(default_factory=list)


@dataclass
class Unexpected:
    """A request whose answer the client did not expect."""

    client: int
    op: str
    method: str
    path: str
    started: float  # seconds since the run's start, monotonic
    ended: float
    status: int | None  # None: no answer (connection failed, closed, timed out)
    kind: str  # "5xx", "no answer", "4xx", "stale read", "wrong answer"
    detail: str
    slug: str | None = None  # the project a write was about

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Results:
    window_s: float
    latencies: list[list[float]]  # per window, milliseconds, every request
    by_op: list[dict[str, list[float]]]  # per window and operation
    statuses: Counter[str] = field(default_factory=Counter)  # "op status"
    unexpected: list[Unexpected] = field(default_factory=list)
    ledger: dict[str, Tracked] = field(default_factory=dict)  # by slug
    requests: int = 0


class Run:
    """What every client of one run shares."""

    def __init__(
        self,
        port: int,
        seconds: float,
        window_s: float,
        seeded: list[str],
        prefix: str,
        timeout: float,
        think_s: float,
        started: float,
    ) -> None:
        self.port, self.seconds, self.timeout, self.think_s = port, seconds, timeout, think_s
        self.seeded, self.prefix, self.started = seeded, prefix, started
        windows = max(1, round(seconds / window_s))
        self.results = Results(window_s, [[] for _ in range(windows)], [{} for _ in range(windows)])

    def clock(self) -> float:
        return time.monotonic() - self.started


class Client:
    def __init__(self, number: int, run: Run) -> None:
        self.number, self.run = number, run
        self.conn = api.Connection(run.port, run.timeout)
        self.random = random.Random(f"{run.prefix}-{number}")
        self.live: list[Tracked] = []
        self.token: str | None = None
        self.cursor: str | None = None
        self.made = 0

    async def loop(self) -> None:
        names, weights = list(MIX), list(MIX.values())
        try:
            while self.run.clock() < self.run.seconds:
                op = self.random.choices(names, weights)[0]
                if op in ("update", "delete", "get_own") and not self.live:
                    op = "create"
                await getattr(self, f"do_{op}")()
                if self.run.think_s:
                    await asyncio.sleep(self.run.think_s)
        finally:
            self.conn.close()

    async def _send(
        self,
        op: str,
        request: api.Request,
        headers: dict[str, str] | None = None,
        slug: str | None = None,
    ) -> tuple[api.Response | None, float, float]:
        results = self.run.results
        started = self.run.clock()
        error = ""
        try:
            response: api.Response | None = await self.conn.send(request, headers)
        except (api.HttpError, TimeoutError) as e:
            response, error = None, str(e) or type(e).__name__
        ended = self.run.clock()
        window = min(int(started // results.window_s), len(results.latencies) - 1)
        elapsed_ms = 1000 * (ended - started)
        results.latencies[window].append(elapsed_ms)
        results.by_op[window].setdefault(op, []).append(elapsed_ms)
        results.requests += 1
        status = response.status if response is not None else None
        results.statuses[f"{op} {status or 'none'}"] += 1
        if response is None:
            self._unexpected(op, request, started, ended, None, "no answer", error, slug)
        elif status is not None and status >= 500:
            self._unexpected(op, request, started, ended, status, "5xx", _excerpt(response), slug)
        return response, started, ended

    def _unexpected(
        self,
        op: str,
        request: api.Request,
        started: float,
        ended: float,
        status: int | None,
        kind: str,
        detail: str,
        slug: str | None = None,
    ) -> None:
        self.run.results.unexpected.append(
            Unexpected(
                self.number,
                op,
                request.method,
                request.path,
                started,
                ended,
                status,
                kind,
                detail,
                slug,
            )
        )

    def _acknowledged(
        self,
        op: str,
        request: api.Request,
        answer: tuple[api.Response | None, float, float],
        slug: str,
    ) -> bool:
        """True for the write's success status; a 4xx other than that is unexpected too."""
        response, started, ended = answer
        if response is None or response.status >= 500:
            return False
        if response.status == api.ACKNOWLEDGED[request.method]:
            if response.token:
                self.token = response.token
            return True
        self._unexpected(
            op, request, started, ended, response.status, "4xx", _excerpt(response), slug
        )
        return False  # the write may have committed all the same (a retried one, say)

    def _text(self) -> str:
        return f"soak {self.number} {secrets.token_hex(self.random.randint(4, 40))}"

    async def do_create(self) -> None:
        self.made += 1
        slug = f"{self.run.prefix}-{self.number}-{self.made}"
        tracked = Tracked(slug)
        self.run.results.ledger[slug] = tracked
        name, description = f"Soak {self.number}-{self.made}", self._text()
        request = api.create(slug, name, description)
        tracked.unacknowledged.append(State(name, slug, description, 1))
        answer = await self._send("create", request, slug=slug)
        response, started, ended = answer
        if not self._acknowledged("create", request, answer, slug):
            return
        assert response is not None
        tracked.key, tracked.acked = api.key_of(response), api.state_of(response)
        if (tracked.acked.name, tracked.acked.description) != (name, description):
            self._unexpected(
                "create", request, started, ended, 201, "wrong answer", _excerpt(response)
            )
        tracked.unacknowledged.clear()
        self.live.append(tracked)
        if len(self.live) > WORKING_SET:
            self.live.pop(0)

    async def do_update(self) -> None:
        tracked = self.random.choice(self.live)
        assert tracked.key is not None and tracked.acked is not None
        before = tracked.acked
        name, description = f"{before.name.split(' v')[0]} v{before.version + 1}", self._text()
        wanted = State(name, before.slug, description, before.version + 1)
        request = api.update(tracked.key, before.version, name, description)
        answer = await self._send("update", request, slug=before.slug)
        response, started, ended = answer
        if not self._acknowledged("update", request, answer, before.slug):
            tracked.unacknowledged.append(wanted)
            self.live.remove(tracked)  # its state is no longer known exactly
            return
        assert response is not None
        tracked.acked = api.state_of(response)
        if tracked.acked != wanted:
            self._unexpected(
                "update", request, started, ended, 200, "wrong answer", _excerpt(response)
            )

    async def do_delete(self) -> None:
        tracked = self.random.choice(self.live)
        assert tracked.key is not None and tracked.acked is not None
        self.live.remove(tracked)
        gone = State(**{**asdict(tracked.acked), "deleted": True})
        request = api.delete(tracked.key)
        answer = await self._send("delete", request, slug=tracked.slug)
        if self._acknowledged("delete", request, answer, tracked.slug):
            tracked.acked = gone
        else:
            tracked.unacknowledged.append(gone)

    async def do_get_own(self) -> None:
        """Read-your-writes: with the token of this client's last write, the last state."""
        tracked = self.random.choice(self.live)
        assert tracked.key is not None
        request = api.get(tracked.key)
        headers = {api.TOKEN: self.token} if self.token else None
        response, started, ended = await self._send("get_own", request, headers)
        if response is None or response.status >= 500:
            return
        if response.status != 200 or api.state_of(response) != tracked.acked:
            detail = f"expected {tracked.acked}; token {self.token}; got {_excerpt(response)}"
            self._unexpected(
                "get_own", request, started, ended, response.status, "stale read", detail
            )

    async def _read(self, op: str, request: api.Request) -> api.Response | None:
        response, started, ended = await self._send(op, request)
        if response is not None and 400 <= response.status < 500:
            self._unexpected(
                op, request, started, ended, response.status, "4xx", _excerpt(response)
            )
            return None
        return response if response is not None and response.status == 200 else None

    async def do_get_seeded(self) -> None:
        await self._read("get_seeded", api.get(self.random.choice(self.run.seeded)))

    async def do_list(self) -> None:
        await self._read("list", api.list_page(self.random.randint(1, api.PAGES)))

    async def do_cursor(self) -> None:
        response = await self._read("cursor", api.cursor_page(self.cursor))
        self.cursor = api.next_cursor(response) if response is not None else None
        if self.random.random() < 0.2:  # start over now and then: the first pages are read most
            self.cursor = None


def _excerpt(response: api.Response) -> str:
    return f"{response.status} {response.body[:300].decode(errors='replace')}"


async def drive(run: Run, clients: int) -> Results:
    """`clients` closed-loop clients until the run's time is up; their results."""
    await asyncio.gather(*(Client(number, run).loop() for number in range(clients)))
    return run.results
