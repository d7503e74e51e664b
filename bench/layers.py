"""What each layer of the stack costs per request, measured in one process.

The HTTP benchmark (run.py) says how far the service is from the floor; this says how
much of that distance the stack itself sets before the service adds a line. Every app
below answers the same two requests (GET one project by id, POST one project) from the
same seeded database, called as ASGI apps directly (no HTTP server, no sockets to the
client, no other process on the CPU clock), so the only difference between two rows
is the layers in between. The floor, the two hand-written ORM apps, the service and the
previous render also answer the list pages (offset with total, cursor) and the parents
with their children:

    floor              Starlette + raw asyncpg pool + orjson (bench/floor_app.py)
    starlette_core     Starlette + SQLAlchemy Core on an autocommit AsyncConnection
    fastapi_constant   FastAPI answering a constant ProjectRead: FastAPI's own cost
    fastapi_asyncpg    FastAPI + raw asyncpg pool (the issue's "FastAPI over asyncpg")
    fastapi_core       FastAPI + SQLAlchemy Core, autocommit, statement built once
    fastapi_orm        FastAPI + AsyncSession + ORM, the leanest ORM service there is
                       (bench/orm_apps.py): reads on an engine in autocommit with
                       statements built once, creates as a unit of work (BEGIN,
                       INSERT, COMMIT); no dependency, no middleware
    fastapi_orm_dep    its get and create, each route given its session maker by a
                       FastAPI dependency, as any FastAPI service hands out sessions:
                       what dependency injection alone costs per request
    fastapi_orm_features  the leanest with the service's production features written
                       the most direct way: issue 24's first target (at most 1.10x)
    usual              the same endpoints as the popular FastAPI templates write them
                       (a `yield` dependency that commits in `finally`, statements
                       built per request, a refresh after every insert, a class
                       dependency run in the thread pool; no pool pre-ping)
    s3rius, fullstack, benavlabs   in the style of s3rius/FastAPI-template,
                       full-stack-fastapi-template (sync routes, psycopg) and
                       benavlabs/FastAPI-boilerplate (FastCRUD), each request path as
                       it ships
    service            the rendered service, every layer (its production settings)
    previous           with --previous-package: the service as an earlier template
                       revision rendered it (run.py --previous-ref), on the same database,
                       libraries and settings; `against_previous` in the output is
                       service / previous per endpoint, overall and round by round

Before anything is measured, every app that answers all the endpoints is sent the
same requests as the service, and its JSON compared with the service's (`same_json` in
the output; a ratio against an app that answers something else would mean nothing).
After a warm-up, each round measures the apps in turn in short slices (--slices per
round, the order rotating), so whatever drifts on the machine during a round falls on
all of them alike; an app's figure for a round is its process CPU time per request over
all its slices. `against_lean`, `against_usual` and `against_previous` are the
service's CPU per request over that app's, per endpoint: round by round (`by_round`,
each ratio paired within one round) and their median (`cpu`, the figure the targets
judge); `of_medians` is the ratio of the two apps' medians over rounds, which the
drift between rounds moves. Run by run.py
(in the service's venv, with the rendered package importable) before it drops the
database; by hand:

    DATABASE_URL=postgresql+asyncpg://... FLOOR_DATABASE_URL=postgresql://... \\
    CURSOR_SECRET=... python bench/layers.py --ids ids.txt --out layers.json \\
        [--previous-package previous_service] [--apps floor,fastapi_orm,usual,service]
"""

import argparse
import asyncio
import gc
import importlib
import json
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import instructions
import orjson
import orm_apps
import uvloop
from fastapi import FastAPI, Request
from harness.endpoints import with_positions
from sqlalchemy import Engine, bindparam, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

Scope = dict[str, Any]
ASGI = Callable[[Scope, Any, Any], Awaitable[None]]

LAYERS = {
    "floor": "Starlette + raw asyncpg + orjson (the floor)",
    "starlette_core": "Starlette + SQLAlchemy Core (autocommit)",
    "fastapi_constant": "FastAPI, constant response (no I/O)",
    "fastapi_asyncpg": "FastAPI + raw asyncpg",
    "fastapi_core": "FastAPI + SQLAlchemy Core (autocommit)",
    "fastapi_orm": "FastAPI + AsyncSession ORM, the leanest (reads in autocommit)",
    "fastapi_orm_dep": "the leanest, its session maker from a dependency",
    "fastapi_orm_features": "the leanest with the service's features (ids, limit, metrics)",
    "usual": "FastAPI + AsyncSession ORM, the usual template pattern",
    "s3rius": "in the style of s3rius/FastAPI-template (commit in finally, DAO)",
    "fullstack": "in the style of full-stack-fastapi-template (sync def, psycopg)",
    "benavlabs": "in the style of benavlabs/FastAPI-boilerplate (FastCRUD)",
    "service": "the rendered service",
    "previous": "the previous render",
}
# What every app answers; the apps in FULL also answer the list pages and the parents
# with their children, as the HTTP benchmark sends them.
ENDPOINTS = ("get", "list_offset", "list_cursor", "with_tasks", "create")
FULL = frozenset(
    {
        "floor",
        "fastapi_orm",
        "fastapi_orm_features",
        "usual",
        "s3rius",
        "fullstack",
        "benavlabs",
        "service",
        "previous",
    }
)
BASIC = ("get", "create")
# Requests per round, as a share of --n: a page of 20 costs several gets.
SHARE = {"get": 1.0, "list_offset": 0.5, "list_cursor": 0.5, "with_tasks": 0.25, "create": 1.0}
PAGES, PAGE_SIZE = 50, 20


def build_apps(
    package: str, url: str, floor_url: str, secret: str, previous: str | None = None
) -> dict[str, Any]:
    """The apps, each with its own pool; the service's models and schemas are shared."""
    models = orm_apps.models_of(package)  # the service's models and schemas
    project_model, read_schema, create_schema = models.project, models.read, models.create
    table = project_model.__table__
    by_id = select(*table.c).where(table.c.id == bindparam("id"))
    insert_row = insert(table).returning(*table.c)  # built once, like the lookups
    new_key = orm_apps.service_name(package, "uuid7", orm_apps.KEY_MODULES)  # its keys
    constant = {
        "id": uuid.uuid4(),
        "name": "n",
        "slug": "s",
        "description": "",
        "version": 1,
        "created_at": datetime.now(UTC),
        "updated_at": datetime.now(UTC),
        "deleted_at": None,
    }
    engines: dict[str, AsyncEngine] = {}
    pools: dict[str, asyncpg.Pool] = {}

    def engine(name: str) -> AsyncEngine:
        return engines[name]

    @asynccontextmanager
    async def with_engine(app: Any) -> AsyncIterator[None]:
        engines[app.title] = create_async_engine(
            url, pool_size=40, max_overflow=0, isolation_level="AUTOCOMMIT"
        )
        try:
            yield
        finally:
            await engines.pop(app.title).dispose()

    @asynccontextmanager
    async def with_pool(app: Any) -> AsyncIterator[None]:
        pools[app.title] = await asyncpg.create_pool(floor_url, min_size=1, max_size=40)
        try:
            yield
        finally:
            await pools.pop(app.title).close()

    def json_response(row: Any, status: int = 200) -> Response:
        body = orjson.dumps({k: (str(v) if isinstance(v, uuid.UUID) else v) for k, v in row})
        return Response(body, status_code=status, media_type="application/json")

    # Starlette + Core -----------------------------------------------------------------
    async def s_get(request: Request) -> Response:
        key = uuid.UUID(request.path_params["project_id"])
        async with engine("starlette_core").connect() as conn:
            row = (await conn.execute(by_id, {"id": key})).mappings().one()
        return json_response(row.items())

    async def s_create(request: Request) -> Response:
        data = orjson.loads(await request.body())
        values = {"id": new_key(), "name": data["name"], "slug": data["slug"], "version": 1}
        async with engine("starlette_core").connect() as conn:
            row = (await conn.execute(insert_row, values)).mappings().one()
        return json_response(row.items(), 201)

    starlette_core = Starlette(
        routes=[
            Route("/api/v1/projects", s_create, methods=["POST"]),
            Route("/api/v1/projects/{project_id}", s_get),
        ],
        lifespan=lambda app: with_engine(app),
    )
    starlette_core.title = "starlette_core"  # type: ignore[attr-defined]

    # FastAPI variants -----------------------------------------------------------------
    def fastapi(name: str, lifespan: Any) -> FastAPI:
        return FastAPI(title=name, lifespan=lifespan)

    fastapi_constant = fastapi("fastapi_constant", None)

    @fastapi_constant.get("/api/v1/projects/{project_id}", response_model=read_schema)
    async def c_get(project_id: uuid.UUID) -> object:
        return constant

    @fastapi_constant.post("/api/v1/projects", response_model=read_schema, status_code=201)
    async def c_create(data: create_schema) -> object:  # type: ignore[valid-type]
        return constant

    fastapi_asyncpg = fastapi("fastapi_asyncpg", with_pool)
    floor_sql = importlib.import_module("floor_app")  # the floor's own SQL

    @fastapi_asyncpg.get("/api/v1/projects/{project_id}", response_model=read_schema)
    async def a_get(project_id: uuid.UUID) -> object:
        return dict(await pools["fastapi_asyncpg"].fetchrow(floor_sql.GET_PROJECT, project_id))

    @fastapi_asyncpg.post("/api/v1/projects", response_model=read_schema, status_code=201)
    async def a_create(data: create_schema) -> object:  # type: ignore[valid-type]
        values = (new_key(), data.name, data.slug, data.description)
        return dict(await pools["fastapi_asyncpg"].fetchrow(floor_sql.INSERT_PROJECT, *values))

    fastapi_core = fastapi("fastapi_core", with_engine)

    @fastapi_core.get("/api/v1/projects/{project_id}", response_model=read_schema)
    async def k_get(project_id: uuid.UUID) -> object:
        async with engine("fastapi_core").connect() as conn:
            return (await conn.execute(by_id, {"id": project_id})).one()

    @fastapi_core.post("/api/v1/projects", response_model=read_schema, status_code=201)
    async def k_create(data: create_schema) -> object:  # type: ignore[valid-type]
        values = {"id": new_key(), "version": 1, **data.model_dump()}
        async with engine("fastapi_core").connect() as conn:
            return (await conn.execute(insert_row, values)).one()

    floor = importlib.import_module("floor_app").app
    service = importlib.import_module(f"{package}.main").app
    apps = {
        "floor": floor,
        "starlette_core": starlette_core,
        "fastapi_constant": fastapi_constant,
        "fastapi_asyncpg": fastapi_asyncpg,
        "fastapi_core": fastapi_core,
        "fastapi_orm": orm_apps.lean_app(models, url, secret),
        "fastapi_orm_dep": orm_apps.lean_app_with_dependency(models, url),
        "fastapi_orm_features": orm_apps.lean_features_app(models, url, secret),
        "usual": orm_apps.usual_app(models, url, secret),
        "s3rius": orm_apps.s3rius_app(models, url, secret),
        "fullstack": orm_apps.fullstack_app(models, url, secret),
        "benavlabs": orm_apps.benavlabs_app(models, url, secret),
        "service": service,
    }
    if previous is not None:
        # Its own package: models, settings and session layer as that revision had them,
        # reading the same environment (DATABASE_URL, CURSOR_SECRET) as the service.
        apps["previous"] = import_beside(f"{previous}.main").app
    return apps


def import_beside(module: str) -> Any:
    """Import a second render's module into this process.

    Both renders define the same Prometheus metrics at import, in prometheus_client's
    one default registry, which refuses a second metric of the same name. The second
    render's metrics are left out of the registry: they still count (the same work per
    request), nobody scrapes them here.
    """
    import prometheus_client

    registry = prometheus_client.REGISTRY
    register = registry.register
    registry.register = lambda collector: None  # type: ignore[method-assign]
    try:
        return importlib.import_module(module)
    finally:
        registry.register = register  # type: ignore[method-assign]


async def call(
    app: ASGI,
    method: str,
    path: str,
    body: bytes,
    statuses: dict[int, int],
    answer: bytearray | None = None,
) -> None:
    """One request to `app`; its status is counted, its body kept in `answer` if given."""
    route, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": route,
        "raw_path": route.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
        "state": {},
    }
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # no disconnect: the client stays until the end
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            statuses[message["status"]] = statuses.get(message["status"], 0) + 1
        elif answer is not None and message["type"] == "http.response.body":
            answer.extend(message.get("body", b""))

    await app(scope, receive, send)


async def cursor_paths(app: ASGI) -> list[str]:
    """Walk `app`'s cursor chain from the first page: one URL per page (each app signs its
    own cursors, so each gets its own list, as in the HTTP benchmark)."""
    paths = [f"/api/v1/projects/cursor?size={PAGE_SIZE}"]
    while len(paths) < PAGES:
        statuses: dict[int, int] = {}
        answer = bytearray()
        await call(app, "GET", paths[-1], b"", statuses, answer)
        if set(statuses) != {200}:
            raise SystemExit(f"layers: cursor walk got {statuses}: {bytes(answer[:300])!r}")
        cursor = orjson.loads(answer)["next_cursor"]
        if cursor is None:
            break
        paths.append(f"/api/v1/projects/cursor?size={PAGE_SIZE}&cursor={cursor}")
    return paths


# What the JSON check compares by kind, not by value: cursors are signed by each app
# (both must have one, or neither), and a created row's key, slug and times are its own.
CREATED_OWN = frozenset({"id", "slug", "created_at", "updated_at"})
JSON_READS = {
    "get": "/api/v1/projects/{id}",
    "list_offset": "/api/v1/projects?size=5&page=3",
    "list_cursor": "/api/v1/projects/cursor?size=5",
    "with_tasks": "/api/v1/projects/with-tasks?size=3&page=2",
}


def comparable(key: str, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if key.startswith("list_cursor"):
        return {**body, "next_cursor": body.get("next_cursor") is not None}
    if key == "create":
        return {k: type(v).__name__ if k in CREATED_OWN else v for k, v in body.items()}
    if key == "with_tasks":
        return with_positions(body)
    return body


async def same_json(apps: dict[str, ASGI], some_id: str, slug: str) -> dict[str, Any]:
    """Every other app that answers all the endpoints, sent the service's requests: is
    its JSON the service's? Reads first (each app's own cursor for a second page), then
    one create each, since a create adds a row to the pages' totals."""
    others = [name for name in apps if name in FULL and name != "service"]
    if "service" not in apps or not others:
        return {}

    async def ask(app: ASGI, method: str, path: str, body: bytes = b"") -> tuple[int, Any]:
        statuses: dict[int, int] = {}
        answer = bytearray()
        await call(app, method, path, body, statuses, answer)
        return next(iter(statuses)), orjson.loads(answer) if answer else None

    answers: dict[str, dict[str, tuple[int, Any]]] = {}
    failed: dict[str, str] = {}  # an app that raised: it cannot be measured on this render
    for name in ["service", *others]:
        mine = answers[name] = {}
        try:
            for key, path in JSON_READS.items():
                mine[key] = await ask(apps[name], "GET", path.format(id=some_id))
            cursor = (mine["list_cursor"][1] or {}).get("next_cursor")
            if cursor is not None:
                path = f"/api/v1/projects/cursor?size=5&cursor={cursor}"
                mine["list_cursor_next"] = await ask(apps[name], "GET", path)
        except Exception as error:
            if name == "service":
                raise
            failed[name] = f"{type(error).__name__}: {error}"[:300]
    for name in (n for n in ["service", *others] if n not in failed):
        body = {"name": "Same JSON", "slug": f"{slug}-{name.replace('_', '-')}", "description": "x"}
        try:
            answers[name]["create"] = await ask(
                apps[name], "POST", "/api/v1/projects", orjson.dumps(body)
            )
        except Exception as error:
            if name == "service":
                raise
            failed[name] = f"{type(error).__name__}: {error}"[:300]
    out: dict[str, Any] = {}
    expected = answers["service"]
    for name, error in failed.items():
        out[name] = {key: {"identical": False, "error": error} for key in [*JSON_READS, "create"]}
    for name in (n for n in others if n not in failed):
        for key, (status, body) in answers[name].items():
            want_status, want = expected.get(key, (None, None))
            same = status == want_status and comparable(key, body) == comparable(key, want)
            check: dict[str, Any] = {"identical": same, "status": [status, want_status]}
            if not same:
                check[name] = orjson.dumps(body)[:400].decode(errors="replace")
                check["service"] = orjson.dumps(want)[:400].decode(errors="replace")
            out.setdefault(name, {})[key] = check
    return out


async def measure(
    app: ASGI, request: Callable[[int], tuple[str, str, bytes]], n: int, concurrency: int
) -> tuple[float, dict[int, int]]:
    """CPU milliseconds per request over `n` requests from `concurrency` tasks."""
    statuses: dict[int, int] = {}
    per_task = n // concurrency

    async def client(k: int) -> None:
        for i in range(per_task):
            await call(app, *request(k * per_task + i), statuses)

    start = time.process_time()
    await asyncio.gather(*(client(k) for k in range(concurrency)))
    return 1000 * (time.process_time() - start) / (per_task * concurrency), statuses


async def main(args: argparse.Namespace) -> dict[str, Any]:
    ids = args.ids.read_text().split()
    run = uuid.uuid4().hex[:8]
    apps = build_apps(
        args.package,
        os.environ["DATABASE_URL"],
        os.environ["FLOOR_DATABASE_URL"],
        os.environ["CURSOR_SECRET"],
        args.previous_package,
    )
    if args.apps:
        chosen = args.apps.split(",")
        if unknown := set(chosen) - set(apps):
            raise SystemExit(f"layers: --apps: no app {sorted(unknown)}; there are {list(apps)}")
        apps = {name: apps[name] for name in chosen}
    pages = range(1, PAGES + 1)
    cursors: dict[str, list[str]] = {}
    requests: dict[str, Callable[[str, int], tuple[str, str, bytes]]] = {
        "get": lambda app, i: ("GET", f"/api/v1/projects/{random.choice(ids)}", b""),
        "list_offset": lambda app, i: (
            "GET",
            f"/api/v1/projects?size={PAGE_SIZE}&page={random.choice(pages)}",
            b"",
        ),
        "list_cursor": lambda app, i: ("GET", random.choice(cursors[app]), b""),
        "with_tasks": lambda app, i: (
            "GET",
            f"/api/v1/projects/with-tasks?size={PAGE_SIZE}&page={random.choice(pages)}",
            b"",
        ),
        "create": lambda app, i: (
            "POST",
            "/api/v1/projects",
            orjson.dumps(
                {
                    "name": "Layer",
                    "slug": f"{args.slug_prefix}{run}-{app.replace('_', '-')}-{i}-{time.time_ns()}",
                }
            ),
        ),
    }
    keys = [key for key in ENDPOINTS if key in args.endpoints.split(",")]
    serves = {name: ENDPOINTS if name in FULL else BASIC for name in apps}
    contexts = [(name, app.router.lifespan_context(app)) for name, app in apps.items()]
    for _, context in contexts:
        await context.__aenter__()
    samples: dict[str, dict[str, list[float]]] = {
        key: {name: [] for name in apps if key in serves[name]} for key in keys
    }
    bad: dict[str, dict[str, dict[int, int]]] = {}
    try:
        checked = await same_json(apps, ids[0], f"{args.slug_prefix}{run}-json")
        # An app that raised on the service's requests cannot be measured: it is left
        # out, and the output says why (`left_out`).
        left_out = {
            name: next(iter(checks.values()))["error"]
            for name, checks in checked.items()
            if any("error" in check for check in checks.values())
        }
        for name in left_out:
            for by_app in samples.values():
                by_app.pop(name, None)
        if args.check_json:
            # The service's own page of the JSON check, for a caller to see what it held.
            statuses: dict[int, int] = {}
            answer = bytearray()
            await call(apps["service"], "GET", JSON_READS["with_tasks"], b"", statuses, answer)
            return {"same_json": checked, "service_with_tasks": orjson.loads(answer)}
        if "list_cursor" in keys:
            for name in samples["list_cursor"]:
                cursors[name] = await cursor_paths(apps[name])
        if args.instructions:
            return {
                "instructions": await count_instructions(
                    apps, samples, requests, args.instructions
                ),
                "same_json": checked,
                "left_out": left_out,
            }
        # Creates last: the rows they add would otherwise lengthen the pages' counts.
        for key in keys:
            order = list(samples[key])
            n = max(args.concurrency, int(args.n * SHARE[key]))
            warmup = max(args.concurrency, int(args.warmup * SHARE[key]))
            await release_idle()
            for name in order:  # warm-up: pools filled, statements prepared, caches hot
                await measure(
                    apps[name], partial_request(requests[key], name), warmup, args.concurrency
                )
            per_slice = max(args.concurrency, n // args.slices)
            for round_ in range(args.rounds):
                # Every app in turn, slice after slice: what drifts on the machine during a
                # round (the other core's load, the clock) falls on every app alike.
                spent = dict.fromkeys(order, 0.0)
                for turn in range(args.slices):
                    first = (round_ * args.slices + turn) % len(order)
                    for name in order[first:] + order[:first]:
                        request = partial_request(requests[key], name)
                        cpu_ms, statuses = await measure(
                            apps[name], request, per_slice, args.concurrency
                        )
                        spent[name] += cpu_ms / args.slices
                        if set(statuses) - {200, 201}:
                            bad.setdefault(key, {})[name] = statuses
                for name in order:
                    samples[key][name].append(spent[name])
        calls = await count_calls(apps, samples, requests, args.calls)
    finally:
        for _, context in reversed(contexts):
            await context.__aexit__(None, None, None)
    if bad:
        raise SystemExit(f"layers: some apps answered errors: {bad}")
    figures = {
        key: {name: statistics.median(values) for name, values in by_app.items()}
        for key, by_app in samples.items()
    }
    return {
        "labels": {name: LAYERS[name] for name in apps if name not in left_out},
        "requests": args.n,
        "requests_by_endpoint": {
            key: max(args.concurrency, int(args.n * SHARE[key])) for key in keys
        },
        "rounds": args.rounds,
        "slices": args.slices,
        "concurrency": args.concurrency,
        "cpu_ms": figures,
        "samples": samples,
        "same_json": checked,
        "left_out": left_out,
        "against_lean": against(samples, "fastapi_orm"),
        "against_features": against(samples, "fastapi_orm_features"),
        "against_usual": against(samples, "usual"),
        "against_s3rius": against(samples, "s3rius"),
        "against_fullstack": against(samples, "fullstack"),
        "against_benavlabs": against(samples, "benavlabs"),
        "against_previous": against(samples, "previous"),
        "calls": calls,
        "calls_against": {
            other: calls_against(calls, other)
            for other in ("fastapi_orm", "fastapi_orm_features", "previous")
        },
    }


# The apps whose function calls are counted: every async app that answers all endpoints.
# (A sync app's routes run in the thread pool, which a profile function set here misses;
# callgrind counts every thread, so instructions are counted for it too.)
COUNTED = (
    "floor",
    "fastapi_orm",
    "fastapi_orm_features",
    "usual",
    "s3rius",
    "benavlabs",
    "service",
    "previous",
)


async def count_calls(
    apps: dict[str, ASGI],
    samples: dict[str, dict[str, list[float]]],
    requests: dict[str, Callable[[str, int], tuple[str, str, bytes]]],
    n: int,
) -> dict[str, dict[str, float]]:
    """Python and C function calls per request, one request at a time: a measure of the
    work per request that does not depend on the machine's speed, its clock or its
    neighbours (the same code on the same libraries makes the same calls), unlike CPU
    time. It counts calls, not what each costs: work inside one C function (pydantic's
    validation, asyncpg's protocol) is one call whatever its size."""
    out: dict[str, dict[str, float]] = {}
    if n <= 0:
        return out
    for key, by_app in samples.items():
        for name in (a for a in COUNTED if a in by_app):
            request = partial_request(requests[key], name)
            await measure(apps[name], request, 5, 1)  # warm: nothing first-time counted
            events = 0

            def profile(frame: Any, event: str, arg: Any) -> None:
                nonlocal events
                if event == "call" or event == "c_call":
                    events += 1

            sys.setprofile(profile)
            try:
                await measure(apps[name], request, n, 1)
            finally:
                sys.setprofile(None)
            out.setdefault(key, {})[name] = round(events / n, 1)
    return out


async def count_instructions(
    apps: dict[str, ASGI],
    samples: dict[str, dict[str, list[float]]],
    requests: dict[str, Callable[[str, int], tuple[str, str, bytes]]],
    n: int,
) -> dict[str, dict[str, float]]:
    """Machine instructions per request under callgrind (bench/instructions.py), one
    request at a time after a warm-up, for every app chosen (`--apps`); callgrind counts
    every thread, so a sync app's thread pool is counted too."""
    if not instructions.under_callgrind():
        raise SystemExit("layers: --instructions needs this process to run under callgrind")
    labels: dict[str, tuple[str, str]] = {}
    for key, by_app in samples.items():
        for name in by_app:
            request = partial_request(requests[key], name)
            await measure(apps[name], request, 10, 1)  # warm: nothing first-time counted
            label = f"{key}/{name}"
            # Every stretch starts with the collector in the same state, the objects of
            # start-up frozen out of its scans as the service freezes its own: otherwise
            # one full collection of the whole heap, falling in one app's stretch and
            # not another's, outweighs tens of requests.
            gc.collect()
            gc.freeze()
            await zero_every_thread()
            await measure(apps[name], request, n, 1)
            instructions.dump(label)
            labels[label] = (key, name)
    out: dict[str, dict[str, float]] = {}
    counted = instructions.read_dumps(Path(os.environ["CALLGRIND_DIR"]))
    for label, (key, name) in labels.items():
        if label in counted:
            out.setdefault(key, {})[name] = round(counted[label] / n)
    return out


async def zero_every_thread() -> None:
    """callgrind's counters to zero, from the thread pool's worker as well as from here.

    A zero requested by one thread leaves out the cost another thread has run but
    callgrind has not yet booked: the thread pool's worker that served a sync app's
    requests books it later, inside the next stretch (after the JSON check, whose sync
    requests run in that worker, the floor's first get counted 10.3 M instructions a
    request instead of 0.4 M). Requested from the worker too, the zero clears what it
    holds. The requests here go one at a time, so the pool keeps one worker, the one
    that takes this call."""
    if threading.active_count() > 1:
        await anyio.to_thread.run_sync(instructions.zero)
    instructions.zero()


def calls_against(calls: dict[str, dict[str, float]], other: str) -> dict[str, float]:
    """service / `other` in function calls per request, per endpoint."""
    return {
        key: round(by_app["service"] / by_app[other], 4)
        for key, by_app in calls.items()
        if by_app.get(other) and "service" in by_app
    }


async def release_idle() -> None:
    """Close the idle connections of every SQLAlchemy engine in this process.

    Each app keeps what its pools opened for as long as it lives, and a dozen apps at
    `--concurrency` connections each, reads and writes on engines of their own, would
    pass PostgreSQL's 100 connections. Between endpoints (before a warm-up, never
    inside a measured round), every engine gives back what it holds; the warm-up opens
    what the next endpoint needs. Engines are found by the garbage collector, as each
    app keeps its own out of reach (the service's inside its session layer)."""
    found = [o for o in gc.get_objects() if isinstance(o, AsyncEngine | Engine)]
    wrapped = {id(o.sync_engine) for o in found if isinstance(o, AsyncEngine)}
    for engine in found:
        if isinstance(engine, AsyncEngine):
            await engine.dispose()
        elif id(engine) not in wrapped and type(engine) is Engine:
            engine.dispose()


def partial_request(
    request: Callable[[str, int], tuple[str, str, bytes]], app: str
) -> Callable[[int], tuple[str, str, bytes]]:
    return lambda i: request(app, i)


def against(samples: dict[str, dict[str, list[float]]], other: str) -> dict[str, dict[str, Any]]:
    """service / `other` per endpoint, round by round and the median of those ratios.

    Both apps were measured in the same slices of every round, so a round's ratio is
    free of what drifted between rounds; the medians of each app over rounds are not
    (`of_medians`, kept for comparison)."""
    out: dict[str, dict[str, Any]] = {}
    for key, by_app in samples.items():
        mine, theirs = by_app.get("service"), by_app.get(other)
        if not mine or not theirs:
            continue
        by_round = [round(a / b, 4) for a, b in zip(mine, theirs, strict=True)]
        out[key] = {
            "cpu": round(statistics.median(by_round), 4),
            "by_round": by_round,
            "of_medians": round(statistics.median(mine) / statistics.median(theirs), 4),
            "cpu_ms": {other: statistics.median(theirs), "service": statistics.median(mine)},
            "spread_ms": {other: [min(theirs), max(theirs)], "service": [min(mine), max(mine)]},
        }
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--package", default="my_service")
    parser.add_argument("--ids", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--n", type=int, default=4000, help="requests per app per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=800)
    parser.add_argument(
        "--slices", type=int, default=20, help="turns per round: apps alternate every n/slices"
    )
    # 4, not 8: a dozen apps, each with its pools, must fit in PostgreSQL's 100 connections.
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--slug-prefix", default="bench-", help="what the cleanup removes")
    parser.add_argument(
        "--previous-package", help="also measure this package's app (an earlier render)"
    )
    parser.add_argument("--apps", help="comma-separated subset of the apps (default: all)")
    parser.add_argument(
        "--instructions",
        type=int,
        default=0,
        help="under callgrind: count machine instructions over this many requests per app "
        "and endpoint instead of timing (CALLGRIND_DIR: where callgrind writes)",
    )
    parser.add_argument(
        "--calls", type=int, default=200, help="requests whose function calls are counted (0: none)"
    )
    parser.add_argument(
        "--endpoints", default=",".join(ENDPOINTS), help="comma-separated subset of the requests"
    )
    parser.add_argument(
        "--check-json",
        action="store_true",
        help="only send every app the service's requests and compare the JSON (no timing); "
        "exit 1 if an app answers otherwise",
    )
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # floor_app
    result = uvloop.run(main(args))
    args.out.write_text(json.dumps(result, indent=2))
    if args.check_json:
        differ = {
            name: [key for key, check in checks.items() if not check["identical"]]
            for name, checks in result["same_json"].items()
        }
        for name, keys in differ.items():
            print(
                f"same JSON as the service: {name}: " + (f"DIFFERS for {keys}" if keys else "yes")
            )
        raise SystemExit(1 if not result["same_json"] or any(differ.values()) else 0)
    if args.instructions:
        for key, by_app in result["instructions"].items():
            print(
                f"{key:11s} instructions/request "
                + ", ".join(f"{a} {v:,.0f}" for a, v in by_app.items())
            )
        raise SystemExit(0)
    for key, by_app in result["cpu_ms"].items():
        for name, value in by_app.items():
            print(f"{key:11s} {LAYERS[name]:48s} {value:.3f} ms")
    for other in ("lean", "features", "usual", "s3rius", "fullstack", "benavlabs", "previous"):
        for key, ratio in result[f"against_{other}"].items():
            rounds = " ".join(f"{r:.3f}" for r in ratio["by_round"])
            print(f"{key:11s} service / {other:8s} {ratio['cpu']:.3f} (rounds {rounds})")
    for key, by_app in result["calls"].items():
        print(f"{key:11s} calls/request " + ", ".join(f"{a} {v:g}" for a, v in by_app.items()))
    for name, checks in result["same_json"].items():
        differ = [key for key, check in checks.items() if not check["identical"]]
        print(
            f"same JSON as the service: {name}: " + (f"DIFFERS for {differ}" if differ else "yes")
        )
