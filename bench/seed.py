"""Seed the benchmark database through the rendered service's own code.

Runs in the benchmark's service venv, with the rendered package importable. Parents
and children go in through the service's own session layer (a `WriteSession` from its
`DatabaseManager`, one `@unit_of_work` per batch) and its repositories' `create_many`
(one multi-row INSERT per batch), after validation by its own `ProjectCreate`/`TaskCreate`
schemas: the data is what the service itself would have stored, and loading it takes
seconds, not the minutes that one request per row would.

    python bench/seed.py --package my_service --projects 10000 --tasks-per-project 5 \
        --ids-out ids.txt    # DATABASE_URL names the database

`--tasks-per-project 0,25,3` gives project n the n-th count of the list, round and
round: parents with none, with more than a listing carries (MAX_CHILDREN_PER_PARENT)
and with fewer, for the checks that the apps answer those alike.
"""

import argparse
import asyncio
import importlib
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any


async def seed(
    package: str, projects: int, tasks_per_project: list[int], batch: int
) -> tuple[list[str], dict[str, Any]]:
    config = importlib.import_module(f"{package}.settings")
    engine_mod = importlib.import_module(f"{package}.kit.db.engine")
    session_mod = importlib.import_module(f"{package}.kit.db.session")
    project_repo_mod = importlib.import_module(f"{package}.projects.repository")
    task_repo_mod = importlib.import_module(f"{package}.tasks.repository")
    project_schemas = importlib.import_module(f"{package}.projects.schemas")
    task_schemas = importlib.import_module(f"{package}.tasks.schemas")
    statuses = ("todo", "doing", "done")

    @session_mod.unit_of_work
    async def store(session: Any, rows: list[dict[str, Any]], counts: list[int]) -> list[Any]:
        """One batch of parents and their children (`counts`: how many each): all stored,
        or none."""
        parents = await project_repo_mod.ProjectRepository(session).create_many(rows)
        children = [
            {
                **task_schemas.TaskCreate(
                    title=f"Task {k}", status=statuses[k % 3], priority=k % 6
                ).model_dump(),
                "project_id": parent.id,
                "created_at": parent.created_at + timedelta(milliseconds=k),
            }
            for parent, tasks in zip(parents, counts, strict=True)
            for k in range(tasks)
        ]
        await task_repo_mod.TaskRepository(session).create_many(children)
        return list(parents)

    settings = config.Settings(database_url=os.environ["DATABASE_URL"])
    db = engine_mod.DatabaseManager(settings)
    await db.connect()
    # Spread creation times over the past days, one second apart, so that ordering by
    # created_at (what every list endpoint does) meets distinct, realistic values.
    start = datetime.now(UTC) - timedelta(seconds=projects + 60)
    ids: list[str] = []
    began = time.perf_counter()
    try:
        for first in range(0, projects, batch):
            numbers = range(first, min(first + batch, projects))
            rows = [
                {
                    **project_schemas.ProjectCreate(
                        name=f"Project {n}", slug=f"seed-{n}", description=f"Seeded project {n}."
                    ).model_dump(),
                    "created_at": start + timedelta(seconds=n),
                }
                for n in numbers
            ]
            counts = [tasks_per_project[n % len(tasks_per_project)] for n in numbers]
            async with db.write_session() as session:
                parents = await store(session, rows, counts)
            ids.extend(str(parent.id) for parent in parents)
    finally:
        await db.disconnect()
    elapsed = time.perf_counter() - began
    return ids, {
        "projects": len(ids),
        "tasks": sum(tasks_per_project[n % len(tasks_per_project)] for n in range(len(ids))),
        "seconds": round(elapsed, 2),
        "batch": batch,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--package", required=True)
    parser.add_argument("--projects", type=int, default=10_000)
    parser.add_argument(
        "--tasks-per-project",
        type=lambda text: [int(n) for n in text.split(",")],
        default=[5],
        help="children per parent; a comma-separated list: project n takes the n-th",
    )
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--ids-out", required=True, help="file for a sample of project ids")
    parser.add_argument("--sample", type=int, default=2000)
    parser.add_argument("--all-ids-out", help="file for every project id")
    args = parser.parse_args()
    ids, result = asyncio.run(seed(args.package, args.projects, args.tasks_per_project, args.batch))
    chosen = random.Random(7).sample(ids, min(args.sample, len(ids)))
    with open(args.ids_out, "w", encoding="utf-8") as out:
        out.write("\n".join(chosen) + "\n")
    if args.all_ids_out:
        with open(args.all_ids_out, "w", encoding="utf-8") as out:
            out.write("\n".join(ids) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
