"""`once`: an effect written at most once per key, however often a job runs.

A job may run twice: a retry after a failure that came after its effect, or a worker
killed after its commit but before the queue heard of it. The handler writes the
effect in a unit of work together with its key in `job_effects`; the second run finds
the key and skips the effect. An effect outside the database (a webhook) sends
the key along instead (an `Idempotency-Key` header), for the receiver to do the same.
"""

from sqlalchemy.dialects.postgresql import insert

from ..db.session import WriteSession
from .enqueue import writing_session
from .schema import JOB_EFFECTS


async def once(session: WriteSession, key: str) -> bool:
    """Record `key` in the unit of work on `session`: True the first time (do the
    effect in the same unit of work), False when it is already recorded (skip it)."""
    writing_session(session)
    statement = (
        insert(JOB_EFFECTS).values(key=key).on_conflict_do_nothing().returning(JOB_EFFECTS.c.key)
    )
    return (await session.execute(statement)).first() is not None
