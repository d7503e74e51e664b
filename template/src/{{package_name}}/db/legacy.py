"""Names of v0.2 that keep working until the next release, each with a `DeprecationWarning`
that names its replacement (the CHANGELOG lists them all). Delete this module, and the
`__getattr__` hooks that serve it, once your code no longer warns.
"""

import importlib
import logging
import warnings
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker

from ..core.errors import Conflict
from ..core.errors import InvalidData
from ..core.errors import StaleVersion
from .dialect import violated_constraint
from .keys import PrimaryKeyMixin
from .pagination import KeysetPage
from .session import LEGACY
from .session import ReadSession
from .session import WriteSession
from .session import constraint_error
from .session import unit_of_work

T = TypeVar("T")
log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD"})
CursorPage = KeysetPage
UUIDPrimaryKeyMixin = PrimaryKeyMixin  # v0.1's name, served by mixins.py in UUID renders


def serve(module: str, replacements: dict[str, str], home: str) -> Callable[..., Any]:
    """A module `__getattr__` that hands out the old names listed, from `home`, with a warning."""

    def attribute(name: str, *, stacklevel: int = 2) -> Any:
        if name not in replacements:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        warnings.warn(
            f"{module}.{name} is deprecated and will be removed in the next release; "
            f"{replacements[name]}",
            DeprecationWarning,
            stacklevel=stacklevel,
        )
        return getattr(importlib.import_module(home), name)

    return attribute


def legacy(session: AsyncSession) -> AsyncSession:
    """Let a session write outside a unit of work, as v0.2 sessions could."""
    session.info[LEGACY] = True
    return session


@asynccontextmanager
async def finished_session(
    sessionmaker: async_sessionmaker[Any],
) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        legacy(session)
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            if session.in_transaction() and isinstance(session, WriteSession):
                await session.commit()


async def once_more_if_dropped(work: Callable[[], Awaitable[T]]) -> T:
    try:
        return await work()
    except DBAPIError as error:
        if not error.connection_invalidated:
            raise
        log.warning("database connection lost (%s); running again", type(error.orig).__name__)
    return await work()


def translate_violation(error: DBAPIError, messages: dict[str, str]) -> Exception:
    detail = messages.get(violated_constraint(error) or "")
    translated = constraint_error(error)
    return type(translated)(detail) if detail else translated


async def run_in_transaction(
    session: AsyncSession,
    work: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    resource: str = "record",
    messages: dict[str, str] | None = None,
) -> T:
    if not isinstance(session, WriteSession):
        raise RuntimeError(
            "a unit of work needs a read-write session: GET and HEAD requests get read sessions"
        )
    session.info.setdefault("retry_attempts", attempts)

    @unit_of_work
    async def run(_session: WriteSession) -> T:
        return await work()

    try:
        return await run(session)
    except StaleVersion as error:
        raise StaleVersion(resource) from error.__cause__
    except (Conflict, InvalidData) as error:
        cause = error.__cause__
        if isinstance(cause, DBAPIError) and messages:
            raise translate_violation(cause, messages) from cause
        raise


def is_read_session(session: AsyncSession) -> bool:
    return isinstance(session, ReadSession) and not isinstance(session, WriteSession)


def read_sessions(engine: AsyncEngine) -> async_sessionmaker[ReadSession]:
    return async_sessionmaker(engine, class_=ReadSession, expire_on_commit=False, autoflush=False)
