from typing import Any

from sqlalchemy import DateTime
from sqlalchemy import func
from sqlalchemy.sql.functions import Function

# timestamptz: PostgreSQL stores UTC and returns aware datetimes.
Timestamp = DateTime(timezone=True)


def now() -> Function[Any]:
    """The database's clock, for defaults: one clock for every replica."""
    return func.now()
