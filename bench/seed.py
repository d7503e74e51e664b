"""Seed the benchmark database through the rendered service's own code.

Runs in the benchmark's service venv, with the rendered package importable. Parents
and children go in through the service's own session layer (a `WriteSession` from its
`DatabaseManager`, one `@unit_of_work` per batch) and its repositories' `create_many`
(one multi-row INSERT per batch), after validation by its own `ProjectCreate`/`TaskCreate`
schemas: the data is what the service itself would have stored, and loading it takes
seconds, not the minutes that one request per row would. A render that keeps that write
path elsewhere is seeded through its models alone (their defaults make keys and times),
in the same batches; the output's `through` says which.

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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

Store = Callable[[list[dict[str, Any]], list[int]], Awaitable[list[Any]]]


def child_rows(task_schemas: Any, parents: list[Any], counts: list[int]) -> list[dict[str, Any]]:
    """`counts[i]` tasks of `parents[i]`, validated by the service's TaskCreate."""
    statuses = ("todo", "doing", "done")
    return [
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


@asynccontextmanager
async def service_store(package: str, url: str) -> AsyncIterator[Store | None]:
    """The service's own write path: a write session of its `DatabaseManager`, one
    `@unit_of_work` per batch, its repositories' `create_many`. None if the render keeps
    them elsewhere (the kit's layout moves; the benchmark must run on any render)."""
    try:
        config = importlib.import_module(f"{package}.settings")
        manager = importlib.import_module(f"{package}.kit.db.engine").DatabaseManager
        unit_of_work = importlib.import_module(f"{package}.kit.db.session").unit_of_work
        projects = importlib.import_module(f"{package}.projects.repository").ProjectRepository
        tasks = importlib.import_module(f"{package}.tasks.repository").TaskRepository
        task_schemas = importlib.import_module(f"{package}.tasks.schemas")
        if not hasattr(projects, "create_many"):
            raise AttributeError("create_many")
    except (ImportError, AttributeError):
        yield None
        return

    @unit_of_work
    async def batch(session: Any, rows: list[dict[str, Any]], counts: list[int]) -> list[Any]:
        """One batch of parents and their children: all stored, or none."""
        parents = await projects(session).create_many(rows)
        await tasks(session).create_many(child_rows(task_schemas, list(parents), counts))
        return list(parents)

    db = manager(config.Settings(database_url=url))
    await db.connect()

    async def store(rows: list[dict[str, Any]], counts: list[int]) -> list[Any]:
        async with db.write_session() as session:
            return await batch(session, rows, counts)

    try:
        yield store
    finally:
        await db.disconnect()


@asynccontextmanager
async def models_store(package: str, url: str) -> AsyncIterator[Store]:
    """The same rows through the service's models alone (their column defaults make the
    keys and times), one transaction and two multi-row INSERTs per batch."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    importlib.import_module(f"{package}.models")  # every mapper
    project = importlib.import_module(f"{package}.projects.models").Project
    task = importlib.import_module(f"{package}.tasks.models").Task
    task_schemas = importlib.import_module(f"{package}.tasks.schemas")
    engine = create_async_engine(url)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    async def store(rows: list[dict[str, Any]], counts: list[int]) -> list[Any]:
        async with sessions() as session, session.begin():
            statement = insert(project).returning(project, sort_by_parameter_order=True)
            parents = list((await session.scalars(statement, rows)).all())
            children = child_rows(task_schemas, parents, counts)
            if children:
                await session.execute(insert(task), children)
            return parents

    try:
        yield store
    finally:
        await engine.dispose()


async def seed(
    package: str, projects: int, tasks_per_project: list[int], batch: int
) -> tuple[list[str], dict[str, Any]]:
    url = os.environ["DATABASE_URL"]
    project_schemas = importlib.import_module(f"{package}.projects.schemas")
    # Spread creation times over the past days, one second apart, so that ordering by
    # created_at (what every list endpoint does) meets distinct, realistic values.
    start = datetime.now(UTC) - timedelta(seconds=projects + 60)
    ids: list[str] = []
    began = time.perf_counter()
    async with service_store(package, url) as own, models_store(package, url) as plain:
        store, through = (own, "service") if own is not None else (plain, "models")
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
            parents = await store(rows, counts)
            ids.extend(str(parent.id) for parent in parents)
    elapsed = time.perf_counter() - began
    return ids, {
        "projects": len(ids),
        "tasks": sum(tasks_per_project[n % len(tasks_per_project)] for n in range(len(ids))),
        "seconds": round(elapsed, 2),
        "batch": batch,
        "through": through,
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
