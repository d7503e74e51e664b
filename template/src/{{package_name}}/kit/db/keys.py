"""Primary keys: the two kinds a model can have, as mixins, and the text each is written as.

`UUIDKey`: a UUIDv7 the service makes, so an object knows its id before it is flushed.
`IntKey`: a 64-bit integer the database assigns on INSERT. The service's `entity.py`
picks one for every model, with its Python type (`UUIDKeyValue` or `IntKeyValue`).

`KEY_PATTERN` is the text either kind can be written as: routes spell a key segment
`{name:key}` (`kit/http/paths.py`), so `/projects/export` is never read as a project id;
the route's parameter type then refuses (422) a segment of the other kind.
"""

import uuid
from typing import Annotated

from pydantic import Field
from sqlalchemy import BigInteger
from sqlalchemy import Identity
from sqlalchemy import Integer
from sqlalchemy import Uuid
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from .limits import INT64_MAX
from .limits import INT64_MIN
from .uuid7 import uuid7

# A key of either kind, for the code that serves both (repositories, services).
AnyKey = uuid.UUID | int

UUIDKeyValue = uuid.UUID
UUID_KEY_TYPE = Uuid()
# Hexadecimal with optional hyphens; pydantic reads every such segment as a UUID.
_UUID_PATTERN = "[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"

# The range is part of the type: the API refuses (422) a key the column cannot hold.
IntKeyValue = Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]
# BIGINT; on SQLite INTEGER, whose integers are 64-bit already: only a column declared
# INTEGER PRIMARY KEY is the rowid that SQLite assigns on INSERT.
INT_KEY_TYPE = BigInteger().with_variant(Integer(), "sqlite")
# Digits, with a sign; one out of range is then a 422 from the range above, not a 404.
_INT_PATTERN = "-?[0-9]+"

KEY_PATTERN = f"{_INT_PATTERN}|{_UUID_PATTERN}"


class UUIDKey:
    """Keys made by the service (time-ordered UUIDv7), so an object knows its id before
    it is flushed."""

    id: Mapped[uuid.UUID] = mapped_column(
        UUID_KEY_TYPE, primary_key=True, default=uuid7, sort_order=-10
    )


class IntKey:
    """A 64-bit key the database assigns on INSERT: an identity column on PostgreSQL,
    AUTO_INCREMENT on MariaDB and MySQL, the rowid on SQLite."""

    id: Mapped[int] = mapped_column(INT_KEY_TYPE, Identity(), primary_key=True, sort_order=-10)
