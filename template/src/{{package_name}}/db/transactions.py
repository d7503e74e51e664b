"""Units of work: how a service runs a transaction, retries it, and names its errors.

A unit of work is an async callable that does all its reads and writes through one
session. `run_in_transaction` commits it, or rolls it back and re-runs it from the
start when the database reports a deadlock or a serialization failure, and turns
constraint violations into domain errors by the constraint's (conventional) name.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ..core.errors import Conflict
from ..core.errors import InvalidData
from ..core.errors import StaleVersion
from .dialect import is_retryable
from .dialect import violated_constraint
from .dialect import violation
from .reads import is_read_session

T = TypeVar("T")
log = logging.getLogger(__name__)

_GENERIC = {
    "unique": "a record with the same unique values already exists",
    "foreign_key": "a referenced record does not exist (or is still referenced)",
}


def translate_violation(error: DBAPIError, messages: dict[str, str]) -> Exception:
    """Map a violated constraint to a domain error; `messages` is keyed by constraint name.

    Conventional names (`uq_…`, `fk_…`, `ck_…`) are what every database reports, so the
    name leads to the message; the database's own text never reaches the client.
    """
    kind = violation(error)
    name = violated_constraint(error)
    detail = messages.get(name or "") or _GENERIC.get(kind or "")
    if kind in {"unique", "foreign_key"}:
        return Conflict(detail or "the request conflicts with stored data")
    return InvalidData(detail or "the data breaks a rule of the database")


async def run_in_transaction(
    session: AsyncSession,
    work: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    resource: str = "record",
    messages: dict[str, str] | None = None,
) -> T:
    """Run `work`, commit, and return its result; retry lost races with jittered backoff.

    A connection the database dropped (restart, failover, idle cut-off) is retried too,
    unless it failed during COMMIT: then nobody knows whether the commit landed.
    """
    if is_read_session(session):
        raise RuntimeError(
            "a unit of work needs a read-write session: GET and HEAD requests get read sessions"
        )
    for attempt in range(1, attempts + 1):
        committing = False
        try:
            result = await work()
            committing = True
            await session.commit()
        except StaleDataError as error:
            await session.rollback()
            raise StaleVersion(resource) from error
        except DBAPIError as error:
            await session.rollback()
            # Some drivers report a broken CHECK as an OperationalError: ask the dialect.
            if violation(error) is not None:
                raise translate_violation(error, messages or {}) from error
            lost = error.connection_invalidated and not committing
            if not (is_retryable(error) or lost) or attempt == attempts:
                raise
            delay = 0.02 * 2**attempt * (1 + random.random())  # noqa: S311 - jitter, not crypto
            why = "its connection was lost" if lost else "it lost a race"
            log.warning("retrying a unit of work: %s (attempt %d)", why, attempt)
            await asyncio.sleep(delay)
        except BaseException:
            await session.rollback()
            raise
        else:
            return result
    raise AssertionError("unreachable")  # pragma: no cover
