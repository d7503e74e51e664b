"""v0.2's request-session names, kept until the next release (`db/legacy.py` says more).

A v0.2 session commits what is still open when the route returns, as it did then.
"""

from collections.abc import AsyncIterator
from collections.abc import Callable
from collections.abc import Coroutine
from typing import Annotated
from typing import Any

from fastapi import Depends
from fastapi import Request
from fastapi import Response
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker

from ..db.engine import DatabaseManager
from ..db.legacy import finished_session
from ..db.legacy import legacy
from ..db.session import WriteSession
from .dependencies import write_session


async def get_session(
    session: Annotated[WriteSession, Depends(write_session)],
) -> AsyncIterator[AsyncSession]:
    legacy(session)
    try:
        yield session
    except BaseException:
        await session.rollback()
        raise
    else:
        if session.in_transaction():
            await session.commit()


async def get_database(request: Request) -> DatabaseManager:
    db: DatabaseManager = request.app.state.db
    return db


async def get_sessionmaker(request: Request) -> async_sessionmaker[WriteSession]:
    db: DatabaseManager = request.app.state.db
    return async_sessionmaker(db.engine, class_=WriteSession, expire_on_commit=False)


class SessionRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            db: DatabaseManager = request.app.state.db
            async with finished_session(db._writes or db.sessionmaker) as session:
                request.state.session = session
                return await handler(request)

        return handle


def request_session(request: Request) -> AsyncSession:
    try:
        session: AsyncSession = request.state.session
    except AttributeError:
        raise RuntimeError(
            f"{request.url.path} has no session: build its router with route_class=SessionRoute"
        ) from None
    return session


DBSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
Database = Annotated[DatabaseManager, Depends(get_database)]
