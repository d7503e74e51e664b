from datetime import UTC
from datetime import datetime
from typing import Any

from sqlalchemy import Dialect
from sqlalchemy import func
from sqlalchemy import text
from sqlalchemy.dialects.mysql import DATETIME
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """DATETIME(6) holds no zone: store UTC (sessions run in UTC), hand back aware values."""

    impl = DATETIME(fsp=6)
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


def inserted_at() -> dict[str, Any]:
    """Column arguments for a creation time: the server's clock, in microseconds."""
    return {"server_default": text("CURRENT_TIMESTAMP(6)")}


def updated_at() -> dict[str, Any]:
    """Column arguments for a modification time, set again by every UPDATE."""
    return {"server_default": text("CURRENT_TIMESTAMP(6)"), "onupdate": func.now(6)}
