"""Scratch SQLite databases for the tests: files in a temporary directory, removed after.

A file has no roles: the owner's URL and the service's are the same.
"""

import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL


@dataclass(frozen=True)
class ScratchDatabase:
    owner: URL  # who migrates
    service: URL  # who serves: on SQLite, the same file


@asynccontextmanager
async def scratch_database(label: str) -> AsyncIterator[ScratchDatabase]:
    with tempfile.TemporaryDirectory(prefix=f"test_{label}_") as directory:
        path = Path(directory) / f"{uuid.uuid4().hex[:10]}.db"
        url = URL.create("sqlite+aiosqlite", database=str(path))
        yield ScratchDatabase(owner=url, service=url)
