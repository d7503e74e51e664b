"""The failed jobs' command, `python -m <package>.kit.jobs.admin`, on the real server:
`failed` lists them, `retry` queues them again (by id, every one of a job, or all),
and on MariaDB and SQLite it refuses in one line."""

import asyncio
import os
import sys

import pytest
from service.kit.db.session import WriteSession
from service.settings import Settings
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from .conftest import SERVICE_ROOT
from .test_jobs_worker import enqueue_one, job_row, unique


async def admin(settings: Settings, *args: str) -> tuple[int, str, str]:
    """The command as an operator runs it: its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "service.kit.jobs.admin",
        *args,
        env={
            **os.environ,
            "PYTHONPATH": str(SERVICE_ROOT / "src"),
            "DATABASE_URL": settings.database_url.render_as_string(hide_password=False),
            "DB_POOL_SIZE": "1",
            "DB_WRITE_POOL_SIZE": "1",
        },
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def fail(engine: AsyncEngine, job_id: int) -> None:
    """The job as the worker leaves it after its last retry."""
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE pgqueuer SET status = 'failed', attempts = 3 WHERE id = :id"),
            {"id": job_id},
        )


def lines_of(out: str, name: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if name in line]


@pytest.mark.postgresql
async def test_failed_jobs_are_listed_and_retried_by_id_or_by_job(
    settings: Settings,
    committing_sessions: async_sessionmaker[WriteSession],
    engine: AsyncEngine,
) -> None:
    name = unique("admin")
    first, second, third = [
        await enqueue_one(committing_sessions, name, {"n": n}) for n in (1, 2, 3)
    ]
    await fail(engine, first)
    await fail(engine, second)

    status, out, err = await admin(settings, "failed")
    assert status == 0, err
    listed = lines_of(out, name)
    assert sorted(int(line[0]) for line in listed) == [first, second]
    assert all(line[1] == name and line[2] == "4" for line in listed)  # runs: 1 + 3 retries

    status, out, err = await admin(settings, "retry", str(first))
    assert status == 0, err
    assert await job_row(engine, first) == {"status": "queued", "attempts": 0}
    assert await job_row(engine, second) == {"status": "failed", "attempts": 3}

    # An id that is not a failed job: said, and left alone; the others are retried.
    status, out, err = await admin(settings, "retry", str(third), str(second))
    assert status == 1
    assert f"not failed: {third}" in err
    assert await job_row(engine, second) == {"status": "queued", "attempts": 0}
    assert await job_row(engine, third) == {"status": "queued", "attempts": 0}

    await fail(engine, first)
    await fail(engine, third)
    status, out, err = await admin(settings, "retry", "--job", name)
    assert status == 0, err
    assert "retried 2 failed jobs" in out
    assert [await job_row(engine, each) for each in (first, third)] == [
        {"status": "queued", "attempts": 0}
    ] * 2


@pytest.mark.postgresql
async def test_the_jobs_admin_refuses_bad_input_with_its_usage(settings: Settings) -> None:
    for args in ((), ("retry",), ("retry", "x1"), ("retry", "1", "--all"), ("dance",)):
        status, out, err = await admin(settings, *args)
        assert status == 2, (args, out, err)
        assert "usage:" in err and "Traceback" not in err, (args, err)


@pytest.mark.mysql
@pytest.mark.sqlite
async def test_the_jobs_admin_refuses_a_database_without_the_queue(settings: Settings) -> None:
    status, out, err = await admin(settings, "failed")
    assert (status, out) == (2, "")
    assert err.strip().splitlines()[-1].startswith("jobs admin: background jobs need PostgreSQL")
    assert "Traceback" not in err
