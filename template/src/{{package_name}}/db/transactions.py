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
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.exc import StaleDataError

from ..core.errors import Conflict
from ..core.errors import InvalidData
from ..core.errors import StaleVersion

T = TypeVar("T")
log = logging.getLogger(__name__)

# SQLSTATEs worth a retry: the transaction lost a race, not a rule.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected


def sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)


def constraint_name(error: DBAPIError) -> str | None:
    cause = getattr(error.orig, "__cause__", None)
    name = getattr(cause, "constraint_name", None)
    return name if isinstance(name, str) else None


def translate_integrity_error(error: IntegrityError, messages: dict[str, str]) -> Exception:
    """Map a violated constraint to a domain error; `messages` is keyed by constraint name."""
    name = constraint_name(error) or ""
    detail = messages.get(name)
    state = sqlstate(error)
    if state == "23505":  # unique_violation
        return Conflict(detail or "a record with the same unique values already exists")
    if state == "23503":  # foreign_key_violation
        return Conflict(detail or "a referenced record does not exist (or is still referenced)")
    return InvalidData(detail or "the data breaks a rule of the database")


async def run_in_transaction(
    session: AsyncSession,
    work: Callable[[], Awaitable[T]],
    *,
    attempts: int = 3,
    resource: str = "record",
    messages: dict[str, str] | None = None,
) -> T:
    """Run `work`, commit, and return its result; retry lost races with jittered backoff."""
    for attempt in range(1, attempts + 1):
        try:
            result = await work()
            await session.commit()
        except IntegrityError as error:
            await session.rollback()
            raise translate_integrity_error(error, messages or {}) from error
        except StaleDataError as error:
            await session.rollback()
            raise StaleVersion(resource) from error
        except DBAPIError as error:
            await session.rollback()
            if sqlstate(error) not in RETRYABLE_SQLSTATES or attempt == attempts:
                raise
            delay = 0.02 * 2**attempt * (1 + random.random())  # noqa: S311 - jitter, not crypto
            log.warning("retrying unit of work after %s (attempt %d)", sqlstate(error), attempt)
            await asyncio.sleep(delay)
        except BaseException:
            await session.rollback()
            raise
        else:
            return result
    raise AssertionError("unreachable")  # pragma: no cover
