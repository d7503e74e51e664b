"""The primary's WAL position after a write's COMMIT: the consistency token's value.

Right after a write session's COMMIT, on the connection that committed, one more
statement takes `pg_current_wal_insert_lsn()`: a WAL position past the commit record,
even with synchronous_commit off (COMMIT then returns before the record is written, so
the write and flush positions may still precede it). Taking it needs no connection of
its own, so a busy pool cannot fail a write that committed; if the primary cannot
answer it, the response goes without a token.
"""

import logging

from sqlalchemy.engine.interfaces import AdaptedConnection
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)

# session.info keys: how long a write session waits for its commit's position (set: it
# takes one), and the position it took (None: it could not).
TAKES_POSITION = "position_timeout"
_COMMITTED = "commit_position"
_COMMIT_POSITION = "SELECT pg_current_wal_insert_lsn()::text"


def lsn(position: str) -> int:
    """A WAL position as PostgreSQL prints it (`16/B374D848`) as a number."""
    high, _, low = position.partition("/")
    return int(high, 16) << 32 | int(low, 16)


def committed_position(session: AsyncSession) -> str | None:
    """The position `session` took after its last commit, if it could; once."""
    position: str | None = session.info.pop(_COMMITTED, None)
    return position


def take_position(session: Session) -> None:
    """Take the primary's WAL position right after COMMIT, on the connection that committed.

    The commit record is inserted by then, so the insert position is past it; the raw
    driver runs the statement (no BEGIN and ROLLBACK around it). A failure leaves the
    response without a token, never fails a write that committed: the connection is
    discarded, and a later commit of the same request may take one again.
    """
    timeout = session.info.get(TAKES_POSITION)
    transaction = session.get_transaction()
    if timeout is None or transaction is None:
        return
    session.info[_COMMITTED] = None
    for connection in transaction.connections:
        driver = connection.connection.dbapi_connection
        if not isinstance(driver, AdaptedConnection):  # pragma: no cover - asyncpg's is one
            continue
        try:
            position = driver.run_async(lambda raw: raw.fetchval(_COMMIT_POSITION, timeout=timeout))
        except Exception as error:  # the write committed: no position only costs the token
            log.warning("no consistency token: the primary did not answer (%r)", error)
            connection.invalidate()
        else:
            session.info[_COMMITTED] = position
