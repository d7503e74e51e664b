"""Reusable columns. A model lists the mixins it needs before `Base`."""

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy import func
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import declared_attr
from sqlalchemy.orm import mapped_column
from sqlalchemy.sql.elements import ColumnElement

from .uuid7 import uuid7


class UUIDPrimaryKeyMixin:
    """Keys made by the service, so an object knows its id before it is flushed."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid7, sort_order=-10)


class TimestampMixin:
    """Times come from the database clock, never from each replica's own."""

    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), sort_order=90
    )
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        server_default=func.now(),
        onupdate=func.now(),
        sort_order=91,
    )


class SoftDeleteMixin:
    """Rows are hidden, not removed; repositories filter on `deleted_at IS NULL`."""

    deleted_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), default=None, sort_order=92
    )

    @hybrid_property
    def is_deleted(self) -> bool:
        return self.deleted_at is not None

    @is_deleted.inplace.expression
    @classmethod
    def _is_deleted_expression(cls) -> ColumnElement[bool]:
        return cls.deleted_at.is_not(None)


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
