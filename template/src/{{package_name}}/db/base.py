"""The declarative base every model inherits."""

from typing import Any

from sqlalchemy import MetaData
from sqlalchemy import Table
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.base import SchemaEventTarget

from .dialect import TABLE_OPTIONS
from .naming import NAMING_CONVENTION

_metadata = MetaData(naming_convention=NAMING_CONVENTION)


@event.listens_for(Table, "after_parent_attach")
def _backend_table_options(table: Table, parent: SchemaEventTarget) -> None:
    """Every table of the service's models declares the backend's table options (on
    MariaDB/MySQL: utf8mb4, so any text is stored whatever the database's default; on
    SQLite: AUTOINCREMENT, so no key is given twice), unless it declares its own.
    Autogenerate writes them into the migration."""
    # Iterating the view gives the options declared; `in` is true of any with a default.
    if parent is _metadata and set(table.dialect_kwargs).isdisjoint(TABLE_OPTIONS):
        table.dialect_kwargs.update(TABLE_OPTIONS)


class Base(DeclarativeBase):
    metadata = _metadata

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
