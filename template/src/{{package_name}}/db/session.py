"""One `AsyncSession` per request, finished before the response is sent.

Every dependency here is `async def`: FastAPI runs a plain `def` dependency in a
thread pool, which costs more than the work these do.

`scope="function"` (FastAPI >= 0.121) runs the code after `yield` when the endpoint
returns, before the response goes out: a commit that fails becomes an error response
instead of a 200 for data that was never stored. Services commit their own units of
work; what is left here ends the read-only transaction a request may have begun, or
rolls back everything when the request failed.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker

from .engine import DatabaseManager
from .engine import finished_session


async def get_database(request: Request) -> DatabaseManager:
    db: DatabaseManager = request.app.state.db
    return db


async def get_sessionmaker(request: Request) -> async_sessionmaker[AsyncSession]:
    """A dependency of its own so tests can bind request sessions to their transaction."""
    db: DatabaseManager = request.app.state.db
    return db.sessionmaker


async def get_session(
    sessionmaker: Annotated[async_sessionmaker[AsyncSession], Depends(get_sessionmaker)],
) -> AsyncIterator[AsyncSession]:
    async with finished_session(sessionmaker) as session:
        yield session


DBSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
Database = Annotated[DatabaseManager, Depends(get_database)]
