"""One measured window: load at a running server, its CPU and PostgreSQL's, from /proc."""

from dataclasses import asdict, dataclass
from typing import Any

from . import load
from .procs import App, BackendSampler, tree_cpu_seconds


@dataclass(frozen=True)
class Measured:
    load: load.LoadResult
    server_cpu_s: float  # the server process and its workers
    pg_cpu_s: float  # the PostgreSQL backends serving the benchmark's database
    pg_new_backends: int

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["load"] = self.load.as_dict()
        return data


def window(
    app: App,
    workloads: tuple[load.Workload, load.Workload],
    settings: load.Settings,
    database: str,
    seconds: float,
    warmup: float,
) -> Measured:
    """`warmup` seconds of the first workload unmeasured (pools filled, statements
    prepared, caches hot), then `seconds` of the second measured. Two workloads, so that
    creates can use slugs of their own in each."""
    first, workload = workloads
    if warmup > 0:
        load.run(app.port, first, warmup, settings)
    sampler = BackendSampler(database)
    before = tree_cpu_seconds(app.pid)
    sampler.start()
    result = load.run(app.port, workload, seconds, settings)
    spent = tree_cpu_seconds(app.pid) - before
    pg_cpu, new_backends = sampler.stop()
    return Measured(result, spent, pg_cpu, new_backends)
