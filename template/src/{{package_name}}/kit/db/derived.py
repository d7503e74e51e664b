"""Statements derived from another one, built once for as long as that one lives.

A repository's base statement (`select()`) is built once per class; what a page adds
to it (the count, the order, the keyset condition, the limit) is the same for every
request but its values. Building a SELECT and computing its cache key costs more CPU
than running a page's query, so each derived statement is built once, with bound
parameters for the values, and kept beside the statement it came from. A statement
built per request (filtered by the caller's values) derives per request, as before,
and its derived statements go with it.
"""

from collections.abc import Callable
from collections.abc import Hashable
from typing import Any
from typing import TypeVar
from weakref import WeakKeyDictionary

from sqlalchemy import Select

T = TypeVar("T")

_DERIVED: "WeakKeyDictionary[Select[Any], dict[Hashable, Any]]" = WeakKeyDictionary()
# Derived statements kept per statement: more means keys that vary with what a client
# sent (sorts repeated in ever new combinations); those are built per call instead, so
# a long-lived statement's memory stays bounded.
_MOST_PER_STATEMENT = 64


def derived(stmt: Select[Any], key: Hashable, build: Callable[[], T]) -> T:
    """What `build()` makes from `stmt`, built on the first call with this `key`.

    `key` must name everything `build` depends on besides `stmt` (never a value a
    client sent: those are bound parameters), so that equal keys mean equal statements.
    """
    built = _DERIVED.get(stmt)
    if built is None:
        built = _DERIVED[stmt] = {}
    try:
        return built[key]  # type: ignore[no-any-return]
    except KeyError:
        if len(built) >= _MOST_PER_STATEMENT:
            return build()
        statement = built[key] = build()
        return statement
