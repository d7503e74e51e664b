"""The background jobs' benchmark (issue 27): what 3 workers run per second, and what
an enqueue adds to a create. A script that measures and prints figures; not a test.

    .venv/bin/python bench/jobs.py                 # ~2-4 min -> bench/results/jobs.json
    .venv/bin/python bench/jobs.py --jobs 6000     # more jobs per throughput run

It renders the default service with `jobs=true` from this working tree (uncommitted
changes included) into bench/results/work/jobs, installs what it needs into the test
harness's venv for its Python (tests/harness/venv.py), creates one database
`bench_jobs_<time>_<pid>` with the admin URL (default
`postgresql://postgres@127.0.0.1:5432/postgres`, or BENCH_ADMIN_URL), migrates it with
the service's own `alembic upgrade head`, and drops it at the end, whatever happens.

1. **Throughput.** `--jobs` jobs of `bench_effect` (bench/jobs_worker.py: each run
   writes its effect once with the kit's `once`) are enqueued first; then 1 worker
   process, and in another run 3, run them with the shipped settings
   (JOBS_CONCURRENCY 10). Jobs per second from the server's clock: the effects'
   count over the time from the first effect to the last (the workers' start-up
   left out). Each run checks that every job had exactly one effect.
2. **The enqueue's cost on a create**, in one process, one caller: the example's
   project created in a unit of work, and the same unit of work with one `enqueue`
   more, taking turns in slices over several rounds. Wall and CPU time per create,
   and statements per create; the ratio is each round's, and the median of them.
"""

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK = BENCH_DIR / "results" / "work" / "jobs"
PACKAGE = "service"


def say(message: str) -> None:
    print(f"[jobs bench] {message}", flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("BENCH_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument("--jobs", type=int, default=3000, help="jobs per throughput run")
    parser.add_argument("--rounds", type=int, default=7, help="rounds of the create phase")
    parser.add_argument("--creates", type=int, default=200, help="creates per slice")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results" / "jobs.json")
    parser.add_argument("phase", nargs="?", help=argparse.SUPPRESS)  # in the venv
    parser.add_argument("--url", help=argparse.SUPPRESS)
    return parser.parse_args()


# ---------------------------------------------------------------- in the service's venv


async def enqueue_phase(url: str, count: int, run: str) -> None:
    from service.kit.db.session import WriteSession, unit_of_work
    from service.kit.jobs import enqueue
    from service.kit.replicas.replicas import open_database
    from service.settings import Settings

    settings = Settings(database_url=url, environment="test")
    db = open_database(settings)
    await db.connect()

    @unit_of_work
    async def write(session: WriteSession, keys: range) -> None:
        for key in keys:
            await enqueue(session, "bench_effect", {"key": f"{run}:{key}"})

    try:
        for start in range(0, count, 500):
            async with db.write_session() as session:
                await write(session, range(start, min(start + 500, count)))
    finally:
        await db.disconnect()


async def create_phase(url: str, rounds: int, creates: int) -> dict[str, Any]:
    import service.models  # noqa: F401 (every model mapped)
    from service.kit.db.session import WriteSession, unit_of_work
    from service.kit.jobs import enqueue
    from service.kit.replicas.replicas import open_database
    from service.projects.repository import ProjectRepository
    from service.settings import Settings
    from sqlalchemy import event

    settings = Settings(database_url=url, environment="test")
    db = open_database(settings)
    await db.connect()
    statements = [0]

    def count(*_: object) -> None:
        statements[0] += 1

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)

    @unit_of_work
    async def create(session: WriteSession, slug: str) -> None:
        await ProjectRepository(session).create(name="Bench", slug=slug, description="")

    @unit_of_work
    async def create_and_enqueue(session: WriteSession, slug: str) -> None:
        project = await ProjectRepository(session).create(name="Bench", slug=slug, description="")
        await enqueue(session, "bench_created", {"project": str(project.id)})

    kinds = {"create": create, "create + enqueue": create_and_enqueue}

    async def slice_of(kind: str) -> tuple[float, float, float]:
        before, wall, cpu = statements[0], time.perf_counter(), time.process_time()
        for _ in range(creates):
            async with db.write_session() as session:
                await kinds[kind](session, f"bench-{uuid.uuid4().hex}")
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return wall / creates * 1000, cpu / creates * 1000, (statements[0] - before) / creates

    try:
        for kind in kinds:  # warm-up: pools filled, statements prepared
            await slice_of(kind)
        per_round: list[dict[str, tuple[float, float, float]]] = []
        for number in range(rounds):
            order = list(kinds) if number % 2 == 0 else list(reversed(kinds))
            per_round.append({kind: await slice_of(kind) for kind in order})
    finally:
        await db.disconnect()
    return {
        "rounds": [
            {kind: dict(zip(("wall_ms", "cpu_ms", "statements"), v)) for kind, v in r.items()}
            for r in per_round
        ],
        "median": {
            kind: {
                "wall_ms": statistics.median(r[kind][0] for r in per_round),
                "cpu_ms": statistics.median(r[kind][1] for r in per_round),
                "statements": statistics.median(r[kind][2] for r in per_round),
            }
            for kind in kinds
        },
        "ratio": {
            measure: {
                "median": statistics.median(
                    r["create + enqueue"][i] / r["create"][i] for r in per_round
                ),
                "rounds": [r["create + enqueue"][i] / r["create"][i] for r in per_round],
            }
            for i, measure in enumerate(("wall", "cpu"))
        },
    }


async def effects_phase(url: str, run: str) -> dict[str, Any]:
    import asyncpg

    conn = await asyncpg.connect(url.replace("+asyncpg", ""))
    try:
        row = await conn.fetchrow(
            "SELECT count(*) AS n, count(DISTINCT key) AS keys, "
            "extract(epoch FROM max(done_at) - min(done_at)) AS seconds "
            "FROM job_effects WHERE key LIKE $1",
            f"bench:{run}:%",
        )
        left = await conn.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE entrypoint = 'bench_effect'"
        )
    finally:
        await conn.close()
    return {
        "effects": row["n"],
        "keys": row["keys"],
        "seconds": float(row["seconds"] or 0),
        "left": left,
    }


def in_venv(args: argparse.Namespace) -> None:
    if args.phase == "enqueue":
        asyncio.run(enqueue_phase(args.url, args.jobs, os.environ["BENCH_RUN"]))
    elif args.phase == "create":
        print(json.dumps(asyncio.run(create_phase(args.url, args.rounds, args.creates))))
    elif args.phase == "effects":
        print(json.dumps(asyncio.run(effects_phase(args.url, os.environ["BENCH_RUN"]))))


# ---------------------------------------------------------------- the runner


def render() -> Path:
    if WORK.exists():
        shutil.rmtree(WORK)
    WORK.parent.mkdir(parents=True, exist_ok=True)
    answers = {"project_name": "Service", "package_name": PACKAGE, "jobs": "true"}
    data = [arg for key, value in answers.items() for arg in ("--data", f"{key}={value}")]
    copier = Path(sys.executable).parent / "copier"
    subprocess.run(
        [str(copier), "copy", "--trust", "--defaults", "--vcs-ref", "HEAD", "-q", *data]
        + [str(REPO_DIR), str(WORK)],
        check=True,
    )
    return WORK


def venv_python(project: Path) -> Path:
    sys.path.insert(0, str(REPO_DIR))
    from tests.harness.venv import service_venv

    return service_venv(project, "3.11") / "python"


def database_url(admin_url: str, name: str) -> str:
    base, _, _ = admin_url.rpartition("/")
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"


def main() -> None:
    args = parse_args()
    if args.phase:
        return in_venv(args)
    project = render()
    python = venv_python(project)
    name = f"bench_jobs_{time.strftime('%Y%m%d%H%M%S')}_{os.getpid()}"
    tool = [str(python), str(BENCH_DIR / "dbtool.py")]
    subprocess.run([*tool, "create", "--admin-url", args.admin_url, "--name", name], check=True)
    url = database_url(args.admin_url, name)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DB_", "JOBS_"))},
        "PYTHONPATH": f"{project / 'src'}:{BENCH_DIR}",
        "BENCH_PACKAGE": PACKAGE,
        "DATABASE_URL": url,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
    }
    results: dict[str, Any] = {"jobs": args.jobs, "throughput": {}}
    try:
        subprocess.run(
            [str(python), "-m", "alembic", "upgrade", "head"], cwd=project, env=env, check=True
        )
        me = [str(python), str(Path(__file__).resolve())]
        for workers in (1, 3):
            run = f"w{workers}-{uuid.uuid4().hex[:6]}"
            renv = {**env, "BENCH_RUN": run}
            say(f"{workers} worker(s): enqueueing {args.jobs} jobs")
            subprocess.run(
                [*me, "enqueue", "--url", url, "--jobs", str(args.jobs)], env=renv, check=True
            )
            processes = [
                subprocess.Popen(
                    [str(python), str(BENCH_DIR / "jobs_worker.py")],
                    env=renv,
                    stdout=subprocess.DEVNULL,
                )
                for _ in range(workers)
            ]
            try:
                deadline = time.monotonic() + 600
                while True:
                    time.sleep(1)
                    found = json.loads(
                        subprocess.run(
                            [*me, "effects", "--url", url],
                            env=renv,
                            check=True,
                            capture_output=True,
                            text=True,
                        ).stdout
                    )
                    if found["left"] == 0 or time.monotonic() > deadline:
                        break
            finally:
                for process in processes:
                    process.terminate()
                for process in processes:
                    process.wait(timeout=60)
            found["jobs_per_second"] = (
                found["effects"] / found["seconds"] if found["seconds"] else None
            )
            found["exactly_once"] = (
                found["effects"] == found["keys"] == args.jobs and found["left"] == 0
            )
            results["throughput"][f"{workers} workers"] = found
            say(f"{workers} worker(s): {found}")
        say(f"create vs create + enqueue: {args.rounds} rounds of {args.creates} each")
        created = subprocess.run(
            [
                *me,
                "create",
                "--url",
                url,
                "--rounds",
                str(args.rounds),
                "--creates",
                str(args.creates),
            ],
            env=env,
            check=False,
            capture_output=True,
            text=True,
        )
        if created.returncode:
            raise SystemExit(created.stderr[-3000:])
        results["create"] = json.loads(created.stdout.strip().splitlines()[-1])
        say(json.dumps(results["create"]["median"]))
        say(json.dumps({k: v["median"] for k, v in results["create"]["ratio"].items()}))
    finally:
        subprocess.run([*tool, "drop", "--admin-url", args.admin_url, "--name", name], check=False)
    results["cpu"] = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown",
    )
    results["cores"] = os.cpu_count()
    results["load_average"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    say(f"written {args.out}")


if __name__ == "__main__":
    main()
