"""Dependencies every router shares: the request's session and the app's settings.

A route that reads takes `ReadSessionDep`; one that writes takes `WriteSessionDep` and
hands it to a service's `@unit_of_work` method. Either session is opened for the
request and closed when the route returns, before the response is sent
(`scope="function"`). Nothing commits here: every write has committed in its unit of
work by then. Tests swap them with `app.dependency_overrides[read_session]` (and
`[write_session]`), as for any FastAPI dependency.
"""

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends
from fastapi import Request

from ..core.config import Settings
from ..db.engine import DatabaseManager
from ..db.session import ReadSession
from ..db.session import WriteSession


async def read_session(request: Request) -> AsyncIterator[ReadSession]:
    db: DatabaseManager = request.app.state.db
    async with db.read_session() as session:
        yield session


async def write_session(request: Request) -> AsyncIterator[WriteSession]:
    db: DatabaseManager = request.app.state.db
    async with db.write_session() as session:
        yield session


async def app_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


ReadSessionDep = Annotated[ReadSession, Depends(read_session, scope="function")]
WriteSessionDep = Annotated[WriteSession, Depends(write_session, scope="function")]
AppSettings = Annotated[Settings, Depends(app_settings)]
