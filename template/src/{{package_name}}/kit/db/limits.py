"""What the database can store.

A value outside these limits is refused where it enters the service (a 422 from the
API's types in `kit/http/schemas.py`, an `InvalidQuery` from `filters.coerce`), so it never
reaches the database to fail there as a 500.
"""

from datetime import UTC
from datetime import datetime

# Text: PostgreSQL cannot store NUL (U+0000), so no backend takes it and data moves
# between them. (Unpaired surrogates are not text at all: pydantic refuses them.)
TEXT_PATTERN = r"^[^\x00]*$"
# Integers: 64-bit signed, the widest column (keys); narrower columns say so in their schema.
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
# Instants, as text: ISO 8601 with a time zone, in the years FIRST_YEAR to LAST_YEAR as
# written. Those years lie inside the columns' range (EARLIEST to LATEST, in UTC) by more
# than any zone's offset, so every instant the pattern admits is storable, and the rule
# fits in the OpenAPI document (a pattern), which no range in UTC does.
# Instants, in UTC: the intersection of the backends' ranges, so the OpenAPI document
# and what the API accepts are the same whatever the database:
# - PostgreSQL: what Python's datetime holds, but for its first and last microsecond,
#   which asyncpg writes as PostgreSQL's -infinity and infinity;
# - MariaDB and MySQL: DATETIME's range, from the year 1000;
# - SQLite: what Python's datetime holds (it stores them as text).
EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999_998, tzinfo=UTC)
FIRST_YEAR, LAST_YEAR = 1001, 9998
_YEARS = "100[1-9]|10[1-9][0-9]|1[1-9][0-9][0-9]|[2-8][0-9][0-9][0-9]"
_YEARS += "|9[0-8][0-9][0-9]|99[0-8][0-9]|999[0-8]"
DATETIME_PATTERN = f"^({_YEARS})-[0-9][0-9]-[0-9][0-9][Tt ]"


def storable_datetime(value: datetime) -> bool:
    """Whether an aware `value` lies between EARLIEST and LATEST once converted to UTC."""
    try:
        return EARLIEST <= value.astimezone(UTC) <= LATEST
    except OverflowError:  # 0001-01-01T00:00+14:00 is in the year 0 in UTC
        return False
