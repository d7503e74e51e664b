"""A worker process for tests/kit/test_jobs_worker.py: the kit's worker command, with a
handler the tests steer through the environment.

JOBS_TEST_NAME names the job; each run records its effect once (`once`), prints
`started <id>`, then, as JOBS_TEST_ROLE says, hangs (`hang`: a worker to kill or to
stop) or sleeps the payload's `seconds` and prints `finished <id>`.

JOBS_TEST_ROLE=`effect`: each run writes the effect of the job the payload's `key`
names, once (`once`), as a row of `jobs_test_effects`, whose key is not unique: a
second effect of one job would be a second row. It prints nothing.
"""

import asyncio
import os

from service.kit.db.session import WriteSession, unit_of_work
from service.kit.jobs import JobRun, Jobs, once
from service.kit.jobs.worker import main
from service.settings import Settings
from sqlalchemy import text

jobs = Jobs()


@unit_of_work
async def record(session: WriteSession, key: str) -> bool:
    return await once(session, key)


EFFECT = text("INSERT INTO jobs_test_effects (key) VALUES (:key)")


@unit_of_work
async def record_effect(session: WriteSession, key: str) -> None:
    if await once(session, key):
        await session.execute(EFFECT, {"key": key})


@jobs.job(os.environ.get("JOBS_TEST_NAME", "unnamed"))
async def work(run: JobRun) -> None:
    if os.environ.get("JOBS_TEST_ROLE") == "effect":
        async with run.db.write_session() as session:
            await record_effect(session, str(run.payload["key"]))
        return
    async with run.db.write_session() as session:
        first = await record(session, run.effect_key)
    print(f"started {run.id} {'effect' if first else 'no-effect'}", flush=True)
    if os.environ.get("JOBS_TEST_ROLE") == "hang":
        await asyncio.sleep(3600)
    await asyncio.sleep(float(str(run.payload.get("seconds", 0))))
    print(f"finished {run.id}", flush=True)


if __name__ == "__main__":
    main(Settings, jobs)
