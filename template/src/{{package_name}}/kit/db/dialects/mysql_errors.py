"""What MariaDB's and MySQL's errors say: their numbers, and the keys their messages name.

`mysql.py` answers the service's questions about an error (which rule it broke, whether
to run the transaction again, which key a duplicate hit) from what this module reads.
Server error numbers: https://mariadb.com/kb/en/mariadb-error-code-reference/
"""

import re
from typing import Any

from sqlalchemy import UniqueConstraint
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import IntegrityError

# The integrity rule each error broke.
VIOLATIONS = {
    1062: "unique",
    1216: "foreign_key",
    1217: "foreign_key",
    1451: "foreign_key",
    1452: "foreign_key",
    3819: "check",  # MySQL
    4025: "check",  # MariaDB
    1048: "not_null",
    1364: "not_null",
}
# Errors for a value a column refuses (in strict mode, MariaDB's and MySQL's default):
# what the client is told.
REFUSED = {
    1264: "a number is out of its column's range",
    1690: "a number is out of range",
    1406: "a text is longer than its column allows",
    1366: "a value is not valid for its column (text its character set cannot store, "
    "or not a number)",
    1300: "a text is not valid in its character set",
    1292: "a date or time is not valid or out of range",
    1411: "a date or time is not valid",
    1265: "a value was cut to fit its column",
    1367: "a value is not valid for its column",
}
DEADLOCK = 1213
NO_SAVEPOINT = 1305
# The server shut down (1053), or this connection was killed (1927, MariaDB).
SERVER_ENDED = frozenset({1053, 1927})
LOCK_WAIT_TIMEOUT = 1205  # lock_wait_timeout (metadata) or innodb_lock_wait_timeout (rows)

_NAMED = re.compile(r"\b((?:uq|ck|fk|pk)_\w+)")
_DUPLICATE_KEY = re.compile(r"for key '(?:[^'.]*\.)?([^']+)'")


def errno(error: DBAPIError) -> int | None:
    """The server's error number of a SQLAlchemy error, if the driver gave one."""
    return errno_of(error.orig)


def errno_of(error: BaseException | None) -> int | None:
    """The server's error number of a driver's error (its first argument)."""
    args = getattr(error, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def named_constraint(error: DBAPIError) -> str | None:
    """The key or constraint the server's message names, picked out by the naming
    convention (`uq_…`, `fk_…`, `ck_…`)."""
    named = _NAMED.search(str(error.orig))
    return named.group(1) if named else None


def duplicate_key(error: IntegrityError) -> str | None:
    """The key a duplicate entry hit, as the server names it (`PRIMARY`, `uq_…`)."""
    found = _DUPLICATE_KEY.search(str(error.orig))
    return found.group(1) if found else None


def keyed_by(model: type[Any], keys: list[str]) -> set[str]:
    """The names of `model`'s unique keys whose columns are exactly `keys`."""
    mapper = sa_inspect(model)
    columns = {mapper.columns[key].name for key in keys}
    table = mapper.local_table
    names = {"PRIMARY"} if {c.name for c in table.primary_key} == columns else set()
    names |= {
        str(constraint.name)
        for constraint in table.constraints
        if isinstance(constraint, UniqueConstraint) and set(constraint.columns.keys()) == columns
    }
    names |= {
        str(index.name)
        for index in table.indexes
        if index.unique and {c.name for c in index.columns} == columns
    }
    return names
