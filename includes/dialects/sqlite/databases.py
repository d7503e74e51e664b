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
