"""The server processes under test, and the CPU they spend, read from /proc.

CPU per request is the benchmark's main figure because it does not depend on how
many cores the load generator and PostgreSQL leave free: it is what one request costs
the server process (user + system time of all its threads), whatever the machine.
"""

import http.client
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name may hold spaces; the fields after its closing parenthesis don't.
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (uvicorn's workers under its supervisor), read from /proc."""
    found: list[int] = []
    for task in os.scandir(f"/proc/{pid}/task"):
        try:
            with open(f"{task.path}/children", encoding="ascii") as children:
                for child in map(int, children.read().split()):
                    found += [child, *descendants(child)]
        except OSError:
            continue
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of `pid` and every process below it that is still running.

    A worker that exited within a window takes its CPU time with it: the load phases
    keep every worker alive from before the window to after it.
    """
    total = 0.0
    for member in (pid, *descendants(pid)):
        try:
            total += cpu_seconds(member)
        except OSError:
            continue
    return total


def service_argv(venv: Path, package: str, port: int) -> list[str]:
    """uvicorn serving a rendered service as its Dockerfile runs it, on a loopback port."""
    uvicorn = str(venv / "bin" / "uvicorn")
    app = f"{package}.main:app"
    return [
        uvicorn,
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--proxy-headers",
    ]


@dataclass
class App:
    """One uvicorn process: the rendered service, a variant of it, or the floor."""

    name: str
    label: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    ready_path: str
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.pid

    def start(self) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start-up; see {self.log_path}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.ready_path)
                if conn.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # uvicorn's graceful shutdown
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
        self.process = None


class BackendSampler:
    """CPU spent by the PostgreSQL backends serving one database, sampled from /proc.

    A backend's command line is `postgres: USER DATABASE HOST(PORT) STATE`, so the
    database's backends can be told apart from every other session on the server.
    Sampling every `period` seconds keeps the last value of each backend, so one that
    exits during the window is counted up to its last sample; a connection that opens
    and closes between two samples is missed (the new-backend count shows the churn).
    """

    def __init__(self, database: str, period: float = 0.2) -> None:
        self.marker = f" {database} "
        self._is_backend: dict[int, bool] = {}
        self.period = period
        self.start_values: dict[int, float] = {}
        self.last_values: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _backends(self) -> dict[int, float]:
        found: dict[int, float] = {}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                if pid not in self._is_backend:  # a pid's command line is read once
                    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                        command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
                    self._is_backend[pid] = (
                        command.startswith("postgres: ") and self.marker in command
                    )
                if self._is_backend[pid]:
                    found[pid] = cpu_seconds(pid)
            except OSError:
                continue
        return found

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.last_values.update(self._backends())

    def start(self) -> None:
        self.start_values = self._backends()
        self.last_values = dict(self.start_values)
        self._thread.start()

    def stop(self) -> tuple[float, int]:
        """Returns (CPU seconds spent in the window, backends that appeared in it)."""
        self._stop.set()
        self._thread.join()
        self.last_values.update(self._backends())
        spent = sum(
            value - self.start_values.get(pid, 0.0) for pid, value in self.last_values.items()
        )
        started = len(set(self.last_values) - set(self.start_values))
        return spent, started
