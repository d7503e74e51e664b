"""One `AsyncSession` per request, opened by the route and finished before the response is sent.

Routers that touch the database are built with `route_class=SessionRoute`. The route
opens the request's session around the endpoint and its dependencies, then commits
what is still open (or rolls back when the request failed) before the response goes
out, so a commit that fails becomes an error response instead of a 200 for data that
was never stored. Services commit their own units of work; a read session is only
closed. `DBSession` hands that session to a handler; in a router without the route
class it opens one of its own, finished the same way.

Why a route class and not a `yield` dependency: FastAPI wraps every generator
dependency in an exit stack, a cancel scope and two context managers on every
request, which cost more than the lookup most requests make (docs/benchmarks.md).

GET and HEAD requests get a read session (`DatabaseManager.sessionmaker_for`): on
PostgreSQL it runs in autocommit, one round trip per statement and no BEGIN/COMMIT.
A read that meets a connection the database has dropped (a restart, a failover, an
idle cut-off) runs once more on a fresh one, and so does a unit of work
(`run_in_transaction`); sessions outside requests are tested before use
(`DatabaseManager.session`). With that, the pool does not need to test every
connection before handing it out (`DB_POOL_PRE_PING`).
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

from .engine import DatabaseManager
from .engine import finished_session
from .engine import once_more_if_dropped
from .reads import READ_METHODS

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class SessionRoute(APIRoute):
    """A route whose endpoint and dependencies share one session, finished before sending."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            db: DatabaseManager = request.app.state.db
            sessionmaker = db.sessionmaker_for(request.method)

            async def attempt() -> Response:
                async with finished_session(sessionmaker) as session:
                    request.state.session = session
                    return await handler(request)

            # A read session cannot write, so a read is safe to run again (a GET handler
            # that writes through a session of its own is not).
            if request.method in READ_METHODS:
                return await once_more_if_dropped(attempt)
            return await attempt()

        return handle


def request_session(request: Request) -> AsyncSession:
    """The session `SessionRoute` opened for this request (services' dependencies use it)."""
    try:
        session: AsyncSession = request.state.session
    except AttributeError:
        raise RuntimeError(
            f"{request.url.path} has no session: build its router with route_class=SessionRoute"
        ) from None
    return session


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """`DBSession`: the route's session under `SessionRoute`; in any other router, a
    session of its own, finished the same way before the response is sent."""
    session: AsyncSession | None = getattr(request.state, "session", None)
    if session is not None:
        yield session
        return
    db: DatabaseManager = request.app.state.db
    async with finished_session(db.sessionmaker_for(request.method)) as session:
        yield session


async def get_database(request: Request) -> DatabaseManager:
    db: DatabaseManager = request.app.state.db
    return db


DBSession = Annotated[AsyncSession, Depends(get_session, scope="function")]
Database = Annotated[DatabaseManager, Depends(get_database)]
