"""What a violated constraint becomes: a domain error carrying the message the models
declare for it (`info={"message": ...}`), or else one naming its columns.

`@unit_of_work` (`session.py`) raises it in place of the database's error, and the
problem handlers (`kit/http/problems.py`) for a violation met outside one.
"""

from sqlalchemy import MetaData
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.schema import ColumnCollectionConstraint

from ..errors import Conflict
from ..errors import DomainError
from ..errors import InvalidData
from .base import Base
from .dialect import violated_constraint
from .dialect import violation


def constraint_error(error: DBAPIError) -> DomainError:
    """The domain error for a violated constraint, with the message the model declares.

    Constraints are named by the convention in `naming.py`, and every database reports
    the name, so the name leads to the constraint's `info["message"]`; the database's
    own text never reaches the client.
    """
    kind = violation(error)
    name = violated_constraint(error) or ""
    detail = constraint_messages().get(name) or default_message(kind, name)
    if kind in ("unique", "foreign_key"):
        return Conflict(detail)
    return InvalidData(detail)


def default_message(kind: str | None, name: str, metadata: MetaData = Base.metadata) -> str:
    """The message of a constraint that declares none: a unique or foreign key constraint
    the models define is named by its columns, so a client learns which field to change."""
    columns = next(
        (
            [column.name for column in constraint.columns]
            for table in metadata.tables.values()
            for constraint in table.constraints
            if constraint.name == name and isinstance(constraint, ColumnCollectionConstraint)
        ),
        [],
    )
    fields = " and ".join(columns)
    if kind == "unique":
        if fields:
            return f"a record with the same {fields} already exists"
        return "a record with the same unique values already exists"
    if kind == "foreign_key":
        if fields:
            return f"a record referenced by {fields} does not exist (or is still referenced)"
        return "a referenced record does not exist (or is still referenced)"
    return "the data breaks a rule of the database"


def constraint_messages() -> dict[str, str]:
    """Every named constraint of the models that declares a message, by name (a foreign
    key may declare it on its `ForeignKey(..., info=...)` in the column)."""
    messages: dict[str, str] = {}
    for table in Base.metadata.tables.values():
        for constraint in table.constraints:
            infos = [constraint.info, *(key.info for key in getattr(constraint, "elements", ()))]
            for info in infos:
                if "message" in info:
                    messages[str(constraint.name)] = info["message"]
    return messages
