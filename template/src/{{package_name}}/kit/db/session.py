"""Sessions and units of work: the one module that says how the service reads, writes and commits.

Two session types, which mypy tells apart:

- `ReadSession`, what GET routes take. Its connections are read-only in the
  database itself, so no statement can write through it, however it is spelled. A
  statement that meets a connection the server dropped (a restart, a failover, an idle
  cut-off) runs once more on a new one: a read changed nothing, so that is safe.
- `WriteSession`, what every other request gets: a `ReadSession` that may also write,
  but only inside a unit of work. A flush or an INSERT, UPDATE or DELETE outside one is
  refused, so a write can never be left for nobody to commit.

`@unit_of_work` marks a service method (or any function) that takes a `WriteSession`. It
is the one place that commits: it runs the method, commits, and runs it again from the
start when the database reports a deadlock, a serialization failure or a connection
lost before COMMIT (after COMMIT was sent nobody knows whether it landed, so that is
not retried). A violated constraint becomes a domain error carrying the message the
constraint declares in the models (`constraints.py`). A unit of work called from inside
another joins it: the outermost one commits.

Requests never commit: `kit/http/dependencies.py` opens a request's session and closes it
before the response is sent. Every write has committed inside its unit of work by
then, so a response never reports a write that was not stored.
"""

import asyncio
import functools
import logging
import random
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any
from typing import ParamSpec
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import InvalidRequestError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState
from sqlalchemy.orm import ORMExecuteState
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..errors import NotFound
from ..errors import StaleVersion
from ..observability.metrics import RETRIES
from .constraints import constraint_error
from .dialect import LOST_CONNECTION
from .dialect import is_retryable
from .dialect import violation

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger(__name__)

# session.info keys: how deep in units of work a session is, and how often to retry one.
_DEPTH = "unit_of_work_depth"
RETRY_ATTEMPTS = "retry_attempts"
# Awaited with the session once an outermost unit of work has sent its COMMIT, whatever
# came of it, before the unit of work returns: what the commit made stale outside the
# database (a cache's entries) is dropped there. Empty unless something registers.
AFTER_COMMIT: list[Callable[["WriteSession"], Awaitable[None]]] = []
# Retries by kind, for /metrics (kit/observability/metrics.py).
_READ_AGAIN = RETRIES.labels("lost_connection", "read")
_WRITE_AGAIN = {
    True: RETRIES.labels("lost_connection", "write"),
    False: RETRIES.labels("deadlock_or_serialization", "write"),
}
# A read runs at most this many times when its connection turns out gone: a restart or a
# failover can end the new connection too while it is being set up.
_READS = 3


class _ReadOnly(Session):
    """The synchronous side of a `ReadSession`: refuses an INSERT, UPDATE or DELETE, and
    runs a read once more when its connection turns out dropped.

    Every statement a session runs, a relationship loader's included, goes through
    `execute`, `scalar` or `scalars`, so these three see all of them. (A `do_orm_execute`
    listener would too, but SQLAlchemy then prepares each statement twice: a tenth of
    the CPU of a read by id.)
    """

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        return _read(self, super().execute, statement, *args, **kwargs)

    def scalar(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        return _read(self, super().scalar, statement, *args, **kwargs)

    def scalars(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        return _read(self, super().scalars, statement, *args, **kwargs)


class _ReadWrite(Session):
    """The synchronous side of a `WriteSession`."""


class ReadSession(AsyncSession):
    """A session for reading; GET routes take one (see the module docstring)."""

    sync_session_class: type[Session] = _ReadOnly

    async def close(self) -> None:
        """Close, even when the server ended the connection after the last statement.

        Closing rolls back what is left open: on MariaDB a read's transaction, after a
        unit of work nothing. The server has already ended that with the connection, so
        the request's answer stands; failing it with a 503 would report a read that
        worked, or a write that committed, as failed."""
        try:
            await super().close()
        except Exception as error:
            if not lost_connection(error):
                raise
            log.warning("connection lost after the last statement; closing without it")
            await super().close()  # the dead connection is invalidated: nothing to roll back


class WriteSession(ReadSession):
    """A session that may also write, inside a `@unit_of_work` (see the module docstring)."""

    sync_session_class = _ReadWrite


@event.listens_for(_ReadOnly, "before_flush")
def _refuse_flush(_session: Session, _context: Any, _instances: Any) -> None:
    raise RuntimeError(
        "a flush on a read session: GET routes read; make the route a POST, PUT, "
        "PATCH or DELETE and write in a @unit_of_work"
    )


def _read(session: Session, run: Callable[..., T], statement: Any, *args: Any, **kwargs: Any) -> T:
    if getattr(statement, "is_dml", False):
        raise RuntimeError(
            "an INSERT, UPDATE or DELETE on a read session: make the route a POST, PUT, "
            "PATCH or DELETE and write in a @unit_of_work"
        )
    for attempt in range(1, _READS + 1):
        try:
            return run(statement, *args, **kwargs)
        except Exception as error:
            if not lost_connection(error) or attempt == _READS:
                raise
            log.warning("database connection lost (%s); reading again", type(error).__name__)
            _READ_AGAIN.inc()
            # The pool has discarded the dead connection and every one opened before it.
            session.rollback()
    raise AssertionError("unreachable")  # pragma: no cover


def lost_connection(error: BaseException) -> bool:
    """Whether `error` says the connection is gone (dropped, ended by the server)."""
    if isinstance(error, DBAPIError):
        return bool(error.connection_invalidated)
    return isinstance(error, LOST_CONNECTION)


_OUTSIDE = "a write outside a unit of work: decorate the method that writes with @unit_of_work"


def _writing_allowed(session: Session) -> bool:
    return bool(session.info.get(_DEPTH))


@event.listens_for(_ReadWrite, "before_flush")
def _flush_inside_a_unit_of_work(session: Session, _context: Any, _instances: Any) -> None:
    if not _writing_allowed(session):
        raise RuntimeError(_OUTSIDE)


@event.listens_for(_ReadWrite, "do_orm_execute")
def _dml_inside_a_unit_of_work(state: ORMExecuteState) -> None:
    if (state.is_insert or state.is_update or state.is_delete) and not _writing_allowed(
        state.session
    ):
        raise RuntimeError(_OUTSIDE)


def unit_of_work(method: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run `method` as one transaction on the `WriteSession` it is given, and commit it."""

    @functools.wraps(method)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        session = _write_session_among(method, args, kwargs)
        if session.info.get(_DEPTH):  # inside another unit of work: that one commits
            return await method(*args, **kwargs)
        attempts: int = session.info.get(RETRY_ATTEMPTS, 3)
        for attempt in range(1, attempts + 1):
            session.info[_DEPTH] = 1
            committing = False
            try:
                result = await method(*args, **kwargs)
                committing = True
                await session.commit()
            except StaleDataError as error:
                await session.rollback()
                raise StaleVersion(getattr(args[0], "resource", "record")) from error
            except Exception as error:
                given = _entities_among(args, kwargs)  # before the rollback expires them
                await session.rollback()
                if isinstance(error, DBAPIError) and violation(error) is not None:
                    raise constraint_error(error) from error
                if lost_connection(error) and committing:
                    log.warning("connection lost during COMMIT: its outcome is unknown")
                lost = lost_connection(error) and not committing
                raced = isinstance(error, DBAPIError) and is_retryable(error)
                if not (raced or lost) or attempt == attempts:
                    raise
                why = "its connection was lost" if lost else "it lost a race"
                log.warning("retrying a unit of work: %s (attempt %d)", why, attempt)
                _WRITE_AGAIN[lost].inc()
                await asyncio.sleep(0.02 * 2**attempt * (1 + random.random()))  # noqa: S311
                await _reload(session, given)
            except BaseException:
                await session.rollback()
                raise
            else:
                return result
            finally:
                session.info[_DEPTH] = 0
                if committing:
                    for hook in AFTER_COMMIT:
                        await hook(session)
        raise AssertionError("unreachable")  # pragma: no cover

    return run


_Loaded = list[tuple[object, InstanceState[Any], list[str]]]


def _entities_among(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Loaded:
    """The ORM objects among a unit of work's arguments (and in lists, tuples, sets and
    dict values among them), each with its state and the attributes it has loaded."""
    found: _Loaded = []
    pending: list[Any] = [*args, *kwargs.values()]
    while pending:
        value = pending.pop()
        if isinstance(value, list | tuple | set | frozenset):
            pending.extend(value)
        elif isinstance(value, dict):
            pending.extend(value.values())
        elif isinstance(state := sa_inspect(value, raiseerr=False), InstanceState):
            loaded = [a.key for a in state.attrs if a.key not in state.unloaded]
            found.append((value, state, loaded))
    return found


async def _reload(session: AsyncSession, given: _Loaded) -> None:
    """Load again what the rollback expired of the objects a retried unit of work was
    given, from the database as the retry finds it: the retry starts from the rows, not
    from what the failed attempt did to them, and reads them without lazy loading."""
    for obj, state, loaded in given:
        if not state.persistent or state.session is not session.sync_session:
            continue  # another session's object, or one the failed attempt had added
        try:
            await session.refresh(obj, attribute_names=loaded or None)
        except InvalidRequestError as error:  # its row is gone
            name = str(state.mapper.local_table.name)  # type: ignore[attr-defined]
            key = state.identity
            raise NotFound(name, key[0] if key and len(key) == 1 else key) from error


def _write_session_among(
    method: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> WriteSession:
    sessions = [a for a in (*args, *kwargs.values()) if isinstance(a, ReadSession)]
    for session in sessions:
        if isinstance(session, WriteSession):
            return session
    name = getattr(method, "__qualname__", "a unit of work")
    if sessions:
        raise RuntimeError(
            f"{name} needs a WriteSession and got a ReadSession: GET routes only read"
        )
    raise TypeError(f"{name} is a @unit_of_work and was given no WriteSession")
