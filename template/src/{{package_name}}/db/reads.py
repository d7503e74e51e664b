"""Read sessions: what GET and HEAD requests get.

A read session runs as `dialect.READ_OPTIONS` says (autocommit on PostgreSQL: no BEGIN
or COMMIT around a request's statements) and refuses to write, on every backend
alike: in autocommit each write would be committed on its own, elsewhere it would be
dropped when the session closes. Units of work refuse read sessions too
(`transactions.run_in_transaction`).

Stream (`stream()`, `yield_per`) from `DatabaseManager.session()`, not from a read
session: where reads run in autocommit, the driver's cursors may need a transaction.
"""

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session

from .dialect import READ_OPTIONS

READ_METHODS = frozenset({"GET", "HEAD"})
_REFUSED = "{what} in a GET or HEAD request: make the route a POST, PUT, PATCH or DELETE"


class ReadSession(Session):
    """The synchronous side of a read session."""


def is_read_session(session: AsyncSession) -> bool:
    return isinstance(session.sync_session, ReadSession)


@event.listens_for(ReadSession, "before_flush")
def _refuse_flush(_session: Session, _context: Any, _instances: Any) -> None:
    raise RuntimeError(_REFUSED.format(what="a flush (ORM objects added, changed or deleted)"))


@event.listens_for(ReadSession, "do_orm_execute")
def _refuse_writes(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise RuntimeError(_REFUSED.format(what="an INSERT, UPDATE or DELETE"))


def read_sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(
        engine.execution_options(**READ_OPTIONS) if READ_OPTIONS else engine,
        sync_session_class=ReadSession,
        expire_on_commit=False,
        autoflush=False,
    )
