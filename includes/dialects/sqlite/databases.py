"""Scratch SQLite databases for the tests: files in a temporary directory, removed after."""

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from sqlalchemy import URL


@asynccontextmanager
async def scratch_database(label: str) -> AsyncIterator[URL]:
    with tempfile.TemporaryDirectory(prefix=f"test_{label}_") as directory:
        path = Path(directory) / f"{uuid.uuid4().hex[:10]}.db"
        yield URL.create("sqlite+aiosqlite", database=str(path))


# Backend facts the tests need.
SLOW_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000) "
    "SELECT count(*), :marker FROM c"
)
PLAIN_URL = "sqlite:///./app.db"
FOREIGN_URL = "oracle://app:s3cr3t@db/app"  # no backend of the kit
NO_DATABASE_URL = "sqlite://"
# Values the database refuses, by kind (tests/api/test_errors.py).
REFUSED_VALUES = frozenset({"int64", "surrogate"})
