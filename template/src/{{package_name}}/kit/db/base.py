"""The declarative base every model inherits."""

import re
from typing import Any

from sqlalchemy import Connection
from sqlalchemy import Inspector
from sqlalchemy import MetaData
from sqlalchemy import Table
from sqlalchemy import event
from sqlalchemy import inspect
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.sql.base import SchemaEventTarget

from .dialect import TABLE_OPTIONS
from .naming import NAMING_CONVENTION

_metadata = MetaData(naming_convention=NAMING_CONVENTION)
_AUTOINCREMENT = re.compile(r"\bAUTOINCREMENT\b", re.IGNORECASE)


@event.listens_for(Table, "after_parent_attach")
def _backend_table_options(table: Table, parent: SchemaEventTarget) -> None:
    """Every table of the service's models declares the backend's table options (on
    MariaDB/MySQL: utf8mb4, so any text is stored whatever the database's default; on
    SQLite: AUTOINCREMENT, so no key is given twice), unless it declares its own.
    Autogenerate writes them into the migration."""
    # Iterating the view gives the options declared; `in` is true of any with a default.
    if parent is _metadata and set(table.dialect_kwargs).isdisjoint(TABLE_OPTIONS):
        table.dialect_kwargs.update(TABLE_OPTIONS)


@event.listens_for(Table, "column_reflect")
def _reflected_autoincrement(inspector: Inspector, table: Table, column: Any) -> None:
    """A SQLite table read from the database keeps AUTOINCREMENT, which SQLite's reflection
    leaves out: Alembic's batch mode copies a table as it reads it, and a copy without
    AUTOINCREMENT would give deleted rows' keys again."""
    bind = inspector.bind
    if (
        not column.get("primary_key")
        or table.schema
        or not isinstance(bind, Connection)
        or bind.dialect.name != "sqlite"
    ):
        return
    found = "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?"
    if _AUTOINCREMENT.search(bind.exec_driver_sql(found, (table.name,)).scalar() or ""):
        table.dialect_kwargs["sqlite_autoincrement"] = True


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
