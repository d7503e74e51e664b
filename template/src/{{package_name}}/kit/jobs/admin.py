"""The failed jobs, for an operator: `python -m <package>.kit.jobs.admin`.

    failed [--limit N]          the jobs kept after their last retry, newest first
    retry ID [ID ...]           queue these failed jobs again, their retries renewed
    retry --job NAME | --all    ... every failed job of NAME, or every failed job

It reads the service's settings from the environment, as the app and the worker do.
An id that is not a failed job is named on stderr and left alone (exit 1); bad
arguments print the usage (exit 2).
"""

import argparse
import asyncio
import json
import sys

from sqlalchemy import text

from ..db.engine import DatabaseManager
from ..db.session import WriteSession
from ..db.session import unit_of_work
from ..extras import require_extras
from ..replicas.replicas import open_database
from ..settings import Settings
from ..settings import load_settings
from .records import list_failed
from .records import retry_failed

_FAILED = text(
    "SELECT id FROM pgqueuer WHERE status = 'failed' "
    "AND (CAST(:job AS text) IS NULL OR entrypoint = :job) "
    "AND (CAST(:ids AS bigint[]) IS NULL OR id = ANY(:ids)) ORDER BY id"
)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m <package>.kit.jobs.admin", description="The failed background jobs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    failed = commands.add_parser("failed", help="list the failed jobs, newest first")
    failed.add_argument("--limit", type=int, default=100, help="at most this many (100)")
    retry = commands.add_parser("retry", help="queue failed jobs again")
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="failed jobs' ids")
    retry.add_argument("--job", help="every failed job of this name")
    retry.add_argument("--all", action="store_true", help="every failed job")
    return parser


def main(argv: list[str] | None = None) -> int:
    arguments = parser()
    args = arguments.parse_args(argv)
    if args.command == "retry" and (bool(args.ids) + bool(args.job) + args.all) != 1:
        arguments.error("retry takes failed jobs' ids, --job NAME or --all: one of them")
    settings = load_settings(Settings)
    if settings.backend != "postgresql":
        print(
            f"jobs admin: background jobs need PostgreSQL, and DATABASE_URL is a "
            f"{settings.backend} URL",
            file=sys.stderr,
        )
        return 2
    require_extras(settings.model_copy(update={"jobs_enabled": True}))
    return asyncio.run(_run(settings, args))


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    db = open_database(settings)
    await db.connect()
    try:
        if args.command == "failed":
            return await _list(db, args.limit)
        return await _retry(db, args.ids or None, args.job)
    finally:
        await db.disconnect()


async def _list(db: DatabaseManager, limit: int) -> int:
    async with db.read_session() as session:
        failed = await list_failed(session, limit=limit)
    print("id\tjob\truns\tfailed_at\tpayload")
    for job in failed:
        when = job.failed_at.isoformat(timespec="seconds")
        print(f"{job.id}\t{job.name}\t{job.runs}\t{when}\t{json.dumps(job.payload)}")
    return 0


async def _retry(db: DatabaseManager, ids: list[int] | None, job: str | None) -> int:
    async with db.write_session() as session:
        retried = await _retry_failed(session, ids, job)
    print(f"retried {len(retried)} failed jobs: {' '.join(map(str, retried))}")
    others = sorted(set(ids or ()) - set(retried))
    if others:
        print(f"not failed: {' '.join(map(str, others))}", file=sys.stderr)
        return 1
    return 0


@unit_of_work
async def _retry_failed(session: WriteSession, ids: list[int] | None, job: str | None) -> list[int]:
    found = await session.execute(_FAILED, {"job": job, "ids": ids})
    failed = [int(each) for each in found.scalars()]
    if failed:
        await retry_failed(session, failed)
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
