"""Drive load at one app for a bounded time, with wrk or, without it, bench/pyload.py.

Both print one `BENCHJSON {...}` line with the same fields; this module runs one and
reads it back. Load is closed-loop (each connection sends its next request when the
previous one is answered) at a fixed number of connections, to 127.0.0.1 only.
"""

import json
import os
import resource
import shutil
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent.parent
WRK_SCRIPT = BENCH_DIR / "wrk" / "bench.lua"
PYLOAD = BENCH_DIR / "pyload.py"


@dataclass(frozen=True)
class Workload:
    """What one load run sends: GETs of random lines of a file, or unique creates."""

    mode: str  # "paths" or "create"
    argument: str  # the paths file, or the slug prefix of created projects
    header: str = ""  # paths mode: "Name: value" sent with every request


@dataclass(frozen=True)
class Settings:
    loader: str  # "wrk" or "python"
    connections: int
    threads: int
    timeout_s: float
    slow_ms: int
    python: str  # interpreter for pyload.py


@dataclass(frozen=True)
class LoadResult:
    requests: int
    duration_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    slow: int  # requests slower than Settings.slow_ms
    errors: dict[str, int]  # connect, read, write, status (HTTP >= 400), timeout
    loader_cpu_s: float = 0.0  # the load generator's own CPU time (user + system)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def choose_loader(preferred: str) -> str:
    if preferred == "auto":
        return "wrk" if shutil.which("wrk") else "python"
    if preferred == "wrk" and not shutil.which("wrk"):
        raise SystemExit("wrk not found: apt-get install -y wrk, or use --loader python")
    return preferred


def wrk_version() -> str | None:
    if not shutil.which("wrk"):
        return None
    result = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    first = (result.stdout or result.stderr).strip().splitlines()
    return first[0].split(" Copyright")[0] if first else None


def _parse(output: str) -> LoadResult:
    for line in output.splitlines():
        if line.startswith("BENCHJSON "):
            data = json.loads(line.removeprefix("BENCHJSON "))
            break
    else:
        raise RuntimeError(f"the load generator printed no result:\n{output[-2000:]}")
    lat = data["latency_us"]
    duration = data["duration_us"] / 1e6
    return LoadResult(
        requests=data["requests"],
        duration_s=round(duration, 3),
        rps=round(data["requests"] / duration, 1) if duration else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        mean_ms=round(lat["mean"] / 1000, 3),
        slow=data["slow"],
        errors={key: int(value) for key, value in data["errors"].items()},
    )


def run(port: int, workload: Workload, seconds: float, settings: Settings) -> LoadResult:
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "BENCH_SLOW_MS": str(settings.slow_ms)}
    if settings.loader == "wrk":
        argv = [
            "wrk",
            f"-t{settings.threads}",
            f"-c{settings.connections}",
            f"-d{max(1, round(seconds))}s",  # wrk takes whole seconds
            f"--timeout={settings.timeout_s:g}s",
            "-s",
            str(WRK_SCRIPT),
            url,
            "--",
            workload.mode,
            workload.argument,
            *([workload.header] if workload.header else []),
        ]
    else:
        argv = [
            settings.python,
            str(PYLOAD),
            url,
            workload.mode,
            workload.argument,
            *([workload.header] if workload.header else []),
            f"--connections={settings.connections}",
            f"--seconds={seconds:g}",
            f"--timeout={settings.timeout_s:g}",
            f"--slow-ms={settings.slow_ms}",
        ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return replace(_parse(result.stdout), loader_cpu_s=round(spent, 3))
