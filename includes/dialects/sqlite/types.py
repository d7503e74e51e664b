from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy import Dialect
from sqlalchemy import func
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """SQLite keeps datetimes as text without a zone: store UTC, hand back aware values."""

    impl = DateTime
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: give it a time zone")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


Timestamp = UTCDateTime()


def utc_now() -> datetime:
    return datetime.now(UTC)


# The process is the database server here, so the service's clock sets the times: one
# text format (with microseconds) for every row keeps them comparable as strings.
# The server default covers rows written by other tools.
def inserted_at() -> dict[str, Any]:
    """Column arguments for a creation time."""
    return {"default": utc_now, "server_default": func.now()}


def updated_at() -> dict[str, Any]:
    """Column arguments for a modification time, set again by every UPDATE."""
    return {"default": utc_now, "onupdate": utc_now, "server_default": func.now()}
