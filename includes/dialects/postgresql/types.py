from typing import Any

from sqlalchemy import DateTime
from sqlalchemy import func

# timestamptz: PostgreSQL stores UTC and hands back aware datetimes.
Timestamp = DateTime(timezone=True)


def inserted_at() -> dict[str, Any]:
    """Column arguments for a creation time: the database clock, one for every replica."""
    return {"server_default": func.now()}


def updated_at() -> dict[str, Any]:
    """Column arguments for a modification time, set again by every UPDATE."""
    return {"server_default": func.now(), "onupdate": func.now()}
