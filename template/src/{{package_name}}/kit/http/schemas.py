"""What every resource's schemas share, settled once for the whole service.

Input fields use the types here, so the API refuses with a 422 naming the field what the
database cannot store (`kit/db/limits.py`) instead of failing in it:

- `StorableStr` for text: `Annotated[StorableStr, Field(max_length=200)]`.
- `StorableDatetime` for instants: aware, ISO 8601 text, in the years the columns hold
  whatever the zone (`db.limits.FIRST_YEAR` to `LAST_YEAR`, as written).
- `Omittable[X]` for the fields of a PATCH: left out, the column stays as it is; `null`
  is refused, as the OpenAPI document says. A column that may be cleared declares
  `X | None` instead, and `null` clears it.
- `EntityRead[Key]` (or `SoftDeletedRead[Key]`) for what every model's read schema
  shows; the service's own `schemas.py` picks the one its models' deletion calls for.

The limits are the same whatever the database (`kit/db/limits.py`), so the OpenAPI
document depends only on the service's own schemas.
"""

import re
from datetime import datetime
from typing import Annotated
from typing import Any
from typing import Generic
from typing import TypeVar

from pydantic import AfterValidator
from pydantic import AwareDatetime
from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field
from pydantic import GetCoreSchemaHandler
from pydantic_core import PydanticCustomError
from pydantic_core import core_schema

from ..db.limits import DATETIME_PATTERN
from ..db.limits import EARLIEST
from ..db.limits import FIRST_YEAR
from ..db.limits import LAST_YEAR
from ..db.limits import LATEST
from ..db.limits import TEXT_PATTERN
from ..db.limits import storable_datetime

T = TypeVar("T")
K = TypeVar("K")

# A pattern rather than a validator: constraints added after it (lengths, a stricter
# pattern) stay plain constraints, enforced and shown in the OpenAPI document.
StorableStr = Annotated[str, Field(pattern=TEXT_PATTERN)]


def _in_range(value: datetime) -> datetime:
    if not storable_datetime(value):
        raise PydanticCustomError(
            "datetime_range",
            "Input should lie between {earliest} and {latest} in UTC",
            {"earliest": EARLIEST.isoformat(), "latest": LATEST.isoformat()},
        )
    return value


def _iso_text(value: object) -> object:
    """ISO 8601 text in the storable years only, as the schema says: pydantic alone also
    reads numbers and strings of digits as Unix times."""
    if isinstance(value, datetime) or (isinstance(value, str) and _DATETIME.match(value)):
        return value
    raise PydanticCustomError(
        "datetime_text",
        "Input should be an ISO 8601 date and time, with a time zone, in the years "
        "{first} to {last}, as the schema says",
        {"first": f"{FIRST_YEAR:04}", "last": f"{LAST_YEAR:04}"},
    )


def json_integer(value: object) -> object:
    """A JSON number only, as the schema says: pydantic alone also takes `true` and "3".
    Put it after the field's constraints: `Annotated[int, Field(ge=0), BeforeValidator(...)]`.
    """
    if isinstance(value, bool | str):
        raise PydanticCustomError("int_type", "Input should be an integer, as the schema says")
    return value


_DATETIME = re.compile(DATETIME_PATTERN)
StorableDatetime = Annotated[
    AwareDatetime,
    BeforeValidator(_iso_text),
    AfterValidator(_in_range),
    Field(
        description=f"With a time zone; in the years {FIRST_YEAR:04} to {LAST_YEAR:04}",
        json_schema_extra={"pattern": DATETIME_PATTERN},
    ),
]
# A version a client last read: the optimistic lock of every update.
Version = Annotated[int, Field(ge=1), BeforeValidator(json_integer)]


class _NotNull:
    """Validates (and documents) `X | None` as `X`: the `None` is only the default."""

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        schema = handler(source)
        return schema["schema"] if schema["type"] == "nullable" else schema


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # `null` is no value the field takes


Omittable = Annotated[T | None, _NotNull(), Field(json_schema_extra=_no_default)]


class EntityRead(BaseModel, Generic[K]):
    """The columns every model has: its key (of type `K`), version and times."""

    model_config = ConfigDict(from_attributes=True)

    id: K
    version: int
    created_at: datetime
    updated_at: datetime


class SoftDeletedRead(EntityRead[K], Generic[K]):
    """`EntityRead` of a soft-deleted model: when it was deleted (null while it is not)."""

    deleted_at: datetime | None
