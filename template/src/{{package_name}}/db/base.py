"""The declarative base every model inherits."""

from typing import Any

from sqlalchemy import MetaData
from sqlalchemy import inspect
from sqlalchemy.orm import DeclarativeBase

from .naming import NAMING_CONVENTION


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    # Fetch server-generated values (timestamps, versions) in the INSERT/UPDATE itself
    # through RETURNING, so reading them after a flush costs no extra round trip.
    __mapper_args__: dict[str, Any] = {"eager_defaults": True}  # noqa: RUF012

    def to_dict(self) -> dict[str, Any]:
        """Column values by attribute name; relationships are left out on purpose."""
        return {attr.key: getattr(self, attr.key) for attr in inspect(self).mapper.column_attrs}

    def __repr__(self) -> str:
        state = inspect(self)
        if state.identity is not None:
            key = ", ".join(repr(part) for part in state.identity)
        else:
            key = "transient" if state.transient else "pending"
        return f"<{type(self).__name__} {key}>"
