"""Reusable columns. A model lists the mixins it needs before `Base`."""

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Mapped
from sqlalchemy.orm import declared_attr
from sqlalchemy.orm import mapped_column

from .types import Timestamp
from .types import inserted_at
from .types import updated_at


class TimestampMixin:
    """Creation and modification times, in UTC; `types.py` says which clock sets them."""

    created_at: Mapped[datetime] = mapped_column(Timestamp, sort_order=90, **inserted_at())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, sort_order=91, **updated_at())


class VersionedMixin:
    """Optimistic locking: every UPDATE checks and bumps `version`.

    An UPDATE that finds the row at another version matches nothing, and SQLAlchemy
    raises `StaleDataError`; services turn that into `StaleVersion`.
    """

    # default=1 serves Core INSERTs (bulk, upsert); ORM flushes set it through the mapper.
    version: Mapped[int] = mapped_column(default=1, sort_order=93)

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c.version, "eager_defaults": True}  # type: ignore[attr-defined]
