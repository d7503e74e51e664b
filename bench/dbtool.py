"""Database chores of the benchmark, run in its service venv (asyncpg is there).

The runner itself needs nothing but the standard library, so the few statements it
must send (create and drop its own database, remove what the create runs inserted,
VACUUM, read versions) go through this small command instead of a client library.

    python bench/dbtool.py create  --admin-url postgresql://postgres@127.0.0.1/postgres --name X
    python bench/dbtool.py role    --admin-url ... --name X   (X's row-only role, X_rows)
    python bench/dbtool.py drop    --admin-url ... --name X   (and X's role)
    python bench/dbtool.py cleanup --url postgresql://.../X --slug-prefix load-
    python bench/dbtool.py vacuum  --url ...
    python bench/dbtool.py versions --url ...
    python bench/dbtool.py covers  --url ... --of postgresql://.../Y  (X has Y's schema)
"""

import argparse
import asyncio
import importlib.metadata
import json
import platform
import re
from typing import Any

import asyncpg

_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
PACKAGES = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "sqlalchemy",
    "asyncpg",
    "uvicorn",
    "uvloop",
    "httptools",
    "orjson",
    "alembic",
    "py-spy",
)


def checked(name: str) -> str:
    """Database names are spliced into CREATE/DROP DATABASE, so only plain ones pass."""
    if not _NAME.fullmatch(name):
        raise SystemExit(f"refusing database name {name!r}")
    return name


async def create(admin_url: str, name: str) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{checked(name)}"')
    finally:
        await conn.close()
    return {"created": name}


def role_of(name: str) -> str:
    """The row-only role the apps connect as: production refuses a superuser."""
    return f"{checked(name)}_rows"


async def role(admin_url: str, name: str) -> dict[str, Any]:
    """A login role that reads and writes the rows of database `name`'s tables, as the
    service's own role does in production (README, "Database roles"); made after the
    migration, so the grants cover every table and sequence there is."""
    user = role_of(name)
    database_url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'CREATE ROLE "{user}" LOGIN')
        await conn.execute(
            f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO "{user}"'
        )
        await conn.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO "{user}"')
    finally:
        await conn.close()
    return {"role": user}


async def drop(admin_url: str, name: str) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_url)
    try:
        # Only this benchmark's own database: its leftover sessions first, then the database.
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = $1 AND pid <> pg_backend_pid()",
            checked(name),
        )
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{role_of(name)}"')
    finally:
        await conn.close()
    return {"dropped": name}


async def cleanup(url: str, slug_prefix: str) -> dict[str, Any]:
    """Remove the rows a create run inserted, so every read run sees the same 10,000."""
    conn = await asyncpg.connect(url)
    try:
        status = await conn.execute("DELETE FROM project WHERE slug LIKE $1", slug_prefix + "%")
        await conn.execute("VACUUM ANALYZE project")
    finally:
        await conn.close()
    return {"deleted": int(status.split()[-1])}


async def vacuum(url: str) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("VACUUM ANALYZE project")
        await conn.execute("VACUUM ANALYZE task")
        counts = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM project) AS projects, (SELECT count(*) FROM task) AS tasks"
        )
    finally:
        await conn.close()
    return dict(counts.items())


async def versions(url: str) -> dict[str, Any]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = None
    conn = await asyncpg.connect(url)
    try:
        found["postgres"] = await conn.fetchval("SHOW server_version")
        settings = {
            row["name"]: row["setting"]
            for row in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["max_connections", "shared_buffers", "ssl", "synchronous_commit", "fsync"],
            )
        }
    finally:
        await conn.close()
    return {"versions": found, "postgres_settings": settings}


_COLUMNS = """
    SELECT table_name, column_name, data_type, character_maximum_length, is_nullable,
           column_default IS NOT NULL AS has_default
    FROM information_schema.columns
    WHERE table_schema = 'public' AND table_name <> 'alembic_version'
"""
_INDEXES = """
    SELECT tablename, indexname, indexdef FROM pg_indexes
    WHERE schemaname = 'public' AND tablename <> 'alembic_version'
"""


async def _schema(url: str) -> tuple[dict[tuple[str, str], tuple[Any, ...]], set[str]]:
    """Columns by (table, column) -> (type, length, nullable, has default), and index
    definitions with their names left out (a renamed index is the same index)."""
    conn = await asyncpg.connect(url)
    try:
        columns = {
            (row["table_name"], row["column_name"]): tuple(row.values())[2:]
            for row in await conn.fetch(_COLUMNS)
        }
        indexes = {
            row["indexdef"].replace(f" {row['indexname']} ON ", " ON ", 1)
            for row in await conn.fetch(_INDEXES)
        }
    finally:
        await conn.close()
    return columns, indexes


async def covers(url: str, of: str) -> dict[str, Any]:
    """Whether the database at `url` holds everything of the schema at `of`: every
    column with its type and nullability, every index by its definition, and no column
    `of` lacks that an insert leaving it out would fail on (NOT NULL with no default).
    `of` is a scratch database another render's own migrations built: what that render
    reads and writes is then in `url` as it expects, whatever names the two histories
    gave their revisions or indexes. Server defaults that differ are listed, not failed:
    a render whose inserts needed one fails the JSON check that runs every app's create
    before anything is measured."""
    theirs, their_indexes = await _schema(of)
    ours, our_indexes = await _schema(url)
    missing = [
        f"{table}.{column} {spec[:3]}"
        for (table, column), spec in sorted(theirs.items())
        if (table, column) not in ours or ours[table, column][:3] != spec[:3]
    ]
    missing += sorted(f"index: {index}" for index in their_indexes - our_indexes)
    defaults = sorted(
        f"{table}.{column} ({'here' if ours[table, column][3] else 'there'} only)"
        for (table, column), spec in theirs.items()
        if (table, column) in ours and ours[table, column][3] != spec[3]
    )
    extra = sorted(ours.keys() - theirs.keys())
    missing += [
        f"{t}.{c} NOT NULL, no default" for t, c in extra if ours[t, c][2:] == ("NO", False)
    ]
    return {
        "covers": not missing,
        "missing": missing,
        "extra": [f"{t}.{c}" for t, c in extra],
        "defaults_differ": defaults,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "command", choices=["create", "role", "drop", "cleanup", "vacuum", "versions", "covers"]
    )
    parser.add_argument("--admin-url")
    parser.add_argument("--url")
    parser.add_argument("--name")
    parser.add_argument("--of", help="covers: the URL of the schema to look for")
    parser.add_argument("--slug-prefix", default="load-")
    args = parser.parse_args()
    if args.command == "create":
        result = asyncio.run(create(args.admin_url, args.name))
    elif args.command == "role":
        result = asyncio.run(role(args.admin_url, args.name))
    elif args.command == "drop":
        result = asyncio.run(drop(args.admin_url, args.name))
    elif args.command == "cleanup":
        result = asyncio.run(cleanup(args.url, args.slug_prefix))
    elif args.command == "vacuum":
        result = asyncio.run(vacuum(args.url))
    elif args.command == "covers":
        result = asyncio.run(covers(args.url, args.of))
    else:
        result = asyncio.run(versions(args.url))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
