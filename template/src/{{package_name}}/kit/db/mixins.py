"""Reusable columns. A model lists the mixins it needs before `Base`.

The service's `entity.py` composes its models' base from these: a key (`keys.py`),
`SoftDelete` if rows are hidden rather than removed, `TimestampMixin` and
`VersionedMixin`.
"""

from datetime import datetime
from typing import Any

from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import declared_attr
from sqlalchemy.orm import mapped_column
from sqlalchemy.sql.elements import ColumnElement

from .types import Timestamp
from .types import inserted_at
from .types import updated_at


class TimestampMixin:
    """Creation and modification times, in UTC; `types.py` says which clock sets them."""

    created_at: Mapped[datetime] = mapped_column(Timestamp, sort_order=90, **inserted_at())
    updated_at: Mapped[datetime] = mapped_column(Timestamp, sort_order=91, **updated_at())


class SoftDelete:
    """Rows are hidden, not removed: the service's repositories see live rows only, turn
    `delete` into a timestamp and can `restore` them."""

    # `hides_row`: setting this column hides the row (the cache drops what it hid).
    deleted_at: Mapped[datetime | None] = mapped_column(
        Timestamp, default=None, sort_order=92, info={"hides_row": True}
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
