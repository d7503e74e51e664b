"""Where the service's CPU goes under load: py-spy samples, summed by package.

py-spy samples the running uvicorn from outside (`--nonblocking`, so the process is
never paused), the way one would profile production. SQLAlchemy's async layer runs
ORM code in greenlets, which py-spy reports as separate stacks, so inclusive times of
outer frames are split; self time (the innermost frame of each sample) is not, which
is why the summary is self time by package, then the heaviest functions, then the
inclusive share of a few frames that name a cost (the pre-ping, BEGIN, COMMIT ...).
Time spent inside C (asyncpg's protocol, uvloop, the socket write() system calls) has
no Python frame of its own and is counted on the Python line that called into it.
"""

import re
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<path>.*):(?P<line>\d+)\)$")

# Frames whose inclusive share names a cost; matched against "function (path".
MARKERS = {
    "pool pre-ping (BEGIN; ; ROLLBACK)": "_async_ping (",
    "BEGIN sent by the dialect": "AsyncAdapt_asyncpg_connection._start_transaction (",
    "COMMIT": "AsyncAdapt_asyncpg_connection.commit (",
    "FastAPI dependency solving": "solve_dependencies (",
    "sync dependencies in the threadpool": "run_in_threadpool (",
    "response validation + serialization": "serialize_response (",
    "ORM Session.execute": "Session.execute (",
    "statement construction (select/where)": "BaseRepository.select (",
    "pool checkout": "_ConnectionFairy._checkout (",
}


@dataclass(frozen=True)
class Profile:
    samples: int
    by_package: list[tuple[str, float]]  # share of self time
    top_functions: list[tuple[str, float]]
    markers: dict[str, float]  # inclusive share

    def as_dict(self) -> dict[str, object]:
        return {
            "samples": self.samples,
            "by_package": self.by_package,
            "top_functions": self.top_functions,
            "markers": self.markers,
        }


def start(
    py_spy: str, pid: int, seconds: int, out: Path, rate: int = 200
) -> subprocess.Popen[bytes]:
    """Start sampling `pid` for `seconds`; the caller applies load meanwhile and waits."""
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(seconds),
            "--rate",
            str(rate),
            "--nonblocking",
            "--threads",
            "--full-filenames",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def package_of(frame: str, service_package: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return "(native code, no Python frame)"
    func, path = match["func"], match["path"]
    if func == "Runner.run" or path.endswith("asyncio/runners.py"):
        return "event loop (uvloop, C) and socket I/O"
    if f"/{service_package}/" in path:
        return f"{service_package} (the service's own code)"
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/", 1)[0].removesuffix(".py")
    if "/lib/python3" in path:
        module = path.split("/lib/python3", 1)[1].split("/", 2)[1]
        return f"stdlib {module.removesuffix('.py')}"
    return path or "(unknown)"


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame or "(native)"
    path = match["path"]
    path = path.split("site-packages/", 1)[-1]
    path = re.sub(r"^.*/lib/python3\.\d+/", "", path)
    return f"{match['func']} ({path}:{match['line']})"


def summarise(raw: Path, service_package: str, top: int = 15) -> Profile:
    """Self time by package over all threads (the threadpool's as one line), the heaviest
    functions of the event loop's thread, and the inclusive share of the MARKERS."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    markers: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, number = line.rstrip().rpartition(" ")
        if not stack or not number.isdigit():
            continue
        n = int(number)
        total += n
        thread, *frames = stack.split(";")
        if not frames:
            continue
        leaf = frames[-1]
        if thread.endswith("MainThread"):
            by_package[package_of(leaf, service_package)] += n
            by_function[_short(leaf)] += n
        else:
            by_package["other threads (the threadpool running sync dependencies)"] += n
        for name, needle in MARKERS.items():
            if any(needle in frame for frame in frames):
                markers[name] += n

    def share(counter: Counter[str], limit: int | None = None) -> list[tuple[str, float]]:
        return [(key, round(100 * v / total, 1)) for key, v in counter.most_common(limit)]

    return Profile(
        samples=total,
        by_package=share(by_package) if total else [],
        top_functions=share(by_function, top) if total else [],
        markers=dict(share(markers)) if total else {},
    )
