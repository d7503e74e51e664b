"""What runs beside the soak's clients: the connection sweeps and the memory samples.

`Sweeper` terminates, every `period` seconds, every client backend of the soak's
database on the primary (which are PgBouncer's server connections) and on the replica
(the service's read pools), with `pg_terminate_backend`, as a failover, a pooler
restart or an operator's kill would. It keeps, per sweep, when it began and ended on
the monotonic clock the clients share, and what each backend was doing: a backend
`active` in `COMMIT` is a write whose outcome the service cannot know.

`MemorySampler` sums the resident memory of uvicorn's worker processes every `period`
seconds, read from /proc, and notes every worker that appears or goes (a restart).
"""

import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg

from .procs import descendants

# Only the soak's own database: every other session on the server is left alone.
TERMINATE = (
    "SELECT pid, application_name, state, left(query, 60), pg_terminate_backend(pid)"
    " FROM pg_stat_activity"
    " WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


@dataclass
class Sweep:
    number: int
    started: float  # seconds since the run's start, monotonic
    ended: float
    terminated: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # by server
    errors: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, dict[str, int]]:
        """Per server: backends terminated, by state (and `active COMMIT`)."""
        out: dict[str, dict[str, int]] = {}
        for server, rows in self.terminated.items():
            counts: dict[str, int] = {}
            for row in rows:
                state = str(row["state"])
                if state == "active" and str(row["query"]).strip().upper().startswith("COMMIT"):
                    state = "active COMMIT"
                counts[state] = counts.get(state, 0) + 1
            out[server] = counts
        return out


class _Periodic(threading.Thread):
    def __init__(self, period: float, started: float, first: float) -> None:
        super().__init__(daemon=True)
        self.period, self.started, self.first = period, started, first
        self._halt = threading.Event()

    def clock(self) -> float:
        return time.monotonic() - self.started

    def run(self) -> None:
        due = self.first
        while not self._halt.wait(max(0.0, due - self.clock())):
            self.tick()
            due += self.period

    def tick(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)


class Sweeper(_Periodic):
    def __init__(
        self, servers: dict[str, str], database: str, period: float, started: float, until: float
    ) -> None:
        """`servers`: a name and a libpq DSN (to another database than the soak's) each."""
        super().__init__(period, started, first=period)
        self.servers, self.database, self.until = servers, database, until
        self.sweeps: list[Sweep] = []

    def tick(self) -> None:
        if self.clock() > self.until:
            return
        sweep = Sweep(len(self.sweeps) + 1, self.clock(), 0.0)
        for name, dsn in self.servers.items():
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                    rows = conn.execute(TERMINATE, [self.database]).fetchall()
                sweep.terminated[name] = [
                    {"pid": pid, "application": app, "state": state, "query": query, "ok": ok}
                    for pid, app, state, query, ok in rows
                ]
            except psycopg.Error as error:
                sweep.errors[name] = str(error).strip()
        sweep.ended = self.clock()
        self.sweeps.append(sweep)


@dataclass
class Sample:
    at: float  # seconds since the run's start
    rss_bytes: int  # sum over the workers
    workers: dict[int, int]  # pid -> RSS bytes


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _is_worker(pid: int) -> bool:
    """uvicorn's workers are multiprocessing children (spawn), unlike its resource tracker."""
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return b"spawn_main" in cmdline.read()


class MemorySampler(_Periodic):
    def __init__(self, root: int, period: float, started: float) -> None:
        """`root`: the process that started uvicorn (or uvicorn's supervisor itself)."""
        super().__init__(period, started, first=0.0)
        self.root = root
        self.samples: list[Sample] = []
        self.seen: dict[int, tuple[float, float]] = {}  # worker pid -> first, last seen

    def workers(self) -> list[int]:
        found = []
        for pid in descendants(self.root):
            try:
                if _is_worker(pid):
                    found.append(pid)
            except OSError:
                continue
        return found

    def tick(self) -> None:
        now = self.clock()
        sizes: dict[int, int] = {}
        for pid in self.workers():
            try:
                sizes[pid] = _rss(pid)
            except OSError:
                continue
            first, _ = self.seen.get(pid, (now, now))
            self.seen[pid] = (first, now)
        self.samples.append(Sample(now, sum(sizes.values()), sizes))
