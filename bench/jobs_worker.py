"""A worker of the jobs benchmark (bench/jobs.py): the rendered service's worker command
with one job more, `bench_effect`, whose run writes the effect its payload's `key`
names once (`once`, the kit's idempotency helper, in its own unit of work). The work
of a real handler that keeps its effect single, and nothing else.

    PYTHONPATH=<render>/src BENCH_PACKAGE=<package> python bench/jobs_worker.py
"""

import importlib
import os

package = os.environ["BENCH_PACKAGE"]
session_module = importlib.import_module(f"{package}.kit.db.session")
jobs_module = importlib.import_module(f"{package}.kit.jobs")
worker_module = importlib.import_module(f"{package}.kit.jobs.worker")
settings_module = importlib.import_module(f"{package}.settings")

BENCH_JOB = "bench_effect"
jobs = jobs_module.Jobs()


@session_module.unit_of_work
async def record(session: object, key: str) -> bool:
    first: bool = await jobs_module.once(session, key)
    return first


@jobs.job(BENCH_JOB)
async def effect(run: object) -> None:
    async with run.db.write_session() as session:  # type: ignore[attr-defined]
        await record(session, f"bench:{run.payload['key']}")  # type: ignore[attr-defined]


if __name__ == "__main__":
    worker_module.main(settings_module.Settings, jobs)
