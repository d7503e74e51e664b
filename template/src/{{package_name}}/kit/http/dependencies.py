"""Dependencies every router shares: the request's session and the app's settings.

A route that reads takes `ReadSessionDep`; one that writes takes `WriteSessionDep` and
hands it to a service's `@unit_of_work` method. Either session is opened for the
request and closed when the route is done, before the response starts
(`CloseSessionsMiddleware`, which `kit/app.py` installs). Nothing commits here: every
write has committed in its unit of work by then. Tests swap them with
`app.dependency_overrides[read_session]` (and `[write_session]`), as for any FastAPI
dependency.

These two also carry the consistency token (`kit/replicas/consistency.py`): a read
refuses a malformed one, ignores one the service did not sign, and with replicas
(`kit/replicas/replicas.py`, PostgreSQL) heeds it; a write that committed on a replicated
database records for the response the one its commit took. Without replicas, that costs
a read one header lookup, a write one type check.
"""

from collections.abc import Awaitable
from collections.abc import Callable
from contextvars import ContextVar
from typing import Annotated

from fastapi import Depends
from fastapi import Request
from starlette.types import ASGIApp
from starlette.types import Message
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

from ..db.engine import DatabaseManager
from ..db.session import ReadSession
from ..db.session import WriteSession
from ..replicas.consistency import presented_token
from ..replicas.consistency import record
from ..replicas.replicas import ReplicatedDatabase
from ..settings import Settings
from .direct import direct


@direct
async def read_session(request: Request) -> ReadSession:
    db: DatabaseManager = request.app.state.db
    token = presented_token(request)
    if token is not None and isinstance(db, ReplicatedDatabase):
        session = await db.read_session_after(token)
    else:
        session = db.read_session()
    _close_before_response(session.close)
    return session


@direct
async def write_session(request: Request) -> WriteSession:
    db: DatabaseManager = request.app.state.db
    session = db.write_session()
    if not isinstance(db, ReplicatedDatabase):
        _close_before_response(session.close)
        return session

    async def close_and_record_token() -> None:
        await session.close()
        token = db.consistency_token(session)
        if token is not None:
            record(request, token)

    _close_before_response(close_and_record_token)
    return session


@direct
async def app_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


ReadSessionDep = Annotated[ReadSession, Depends(read_session)]
WriteSessionDep = Annotated[WriteSession, Depends(write_session)]
AppSettings = Annotated[Settings, Depends(app_settings)]

Close = Callable[[], Awaitable[object]]
# What closes each session the current request opened, in the order it opened them.
_to_close: ContextVar[list[Close] | None] = ContextVar("sessions_to_close", default=None)


def _close_before_response(close: Close) -> None:
    pending = _to_close.get()
    if pending is None:
        raise RuntimeError("request sessions need CloseSessionsMiddleware (kit/app.py adds it)")
    pending.append(close)


class CloseSessionsMiddleware:
    """Closes the sessions a request opened once its route is done, before the response starts.

    So a connection is back in the pool before the client hears back: a client that
    read its response can count on nothing of its request still holding the database,
    and a failure to close is still the request's to report. A route that fails closes
    them the same way, before its error response; one that is abandoned (the client
    went away) closes them as it unwinds.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pending: list[Close] = []
        token = _to_close.set(pending)

        async def send_after_closing(message: Message) -> None:
            if pending and message["type"] == "http.response.start":
                await _close_all(pending)
            await send(message)

        try:
            await self.app(scope, receive, send_after_closing)
        finally:
            _to_close.reset(token)
            if pending:
                await _close_all(pending)


async def _close_all(pending: list[Close]) -> None:
    closes, failed = pending.copy(), None
    pending.clear()
    for close in closes:  # every one, whichever fails
        try:
            await close()
        except BaseException as error:  # raised below, once the others are closed
            failed = failed or error
    if failed is not None:
        raise failed
