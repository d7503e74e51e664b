"""Schemathesis hooks for tests/test_fuzz.py: the values no schema can describe.

A page cursor is signed by the service (HMAC): a schema can say it is a string, never
which strings the service issued, so a made-up one is schema-valid and rightly refused
(422). Here, in the cases Schemathesis calls valid, a cursor the service did not issue
is replaced by one it did, for the same sort: the ones tests/test_fuzz.py asked the
booted service for (the JSON file named by CFS_FUZZ_VALUES), and every `next_cursor` a
response of the run itself carries (a cursor belongs to the sort that issued it). The
cursor page is then held to the usual statuses.

PostgreSQL's reads take an optional `X-Consistency-Token` header ("16/B374D848"). The
coverage phase writes header values from letters and digits only: for a pattern that
needs a "/" it sends "0" in cases it calls valid. There, such a value is replaced by a
well-formed token, the database's own WAL position read before the run.

Cases generated to be invalid are sent as generated: the service must refuse them.
"""

import json
import os
import re
from pathlib import Path
from typing import Any

import schemathesis

VALUES: dict[str, Any] = json.loads(Path(os.environ["CFS_FUZZ_VALUES"]).read_text())
TOKEN_HEADER = "X-Consistency-Token"
TOKEN = re.compile(VALUES["token_pattern"]) if VALUES.get("token_pattern") else None
# Issued cursors by operation path and sort ("" when the request names none).
ISSUED: dict[str, dict[str, str]] = VALUES["cursors"]
# Every (sort, cursor) the service issued, before the run and during it.
SEEN = {(sort, cursor) for by_sort in ISSUED.values() for sort, cursor in by_sort.items()}


def _sort(query: dict[str, Any] | None) -> str:
    return str((query or {}).get("sort", ""))


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return
    issued = ISSUED.get(case.operation.path)
    query, headers = case.query or {}, case.headers or {}
    if issued and "cursor" in query and (_sort(query), query["cursor"]) not in SEEN:
        query["cursor"] = issued.get(_sort(query), issued[""])
    if TOKEN and TOKEN_HEADER in headers and not TOKEN.match(str(headers[TOKEN_HEADER])):
        headers[TOKEN_HEADER] = VALUES["token"]


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Every cursor the service issues during the run is one a later case may present."""
    if case.operation.path in ISSUED and response.status_code == 200:
        cursor = response.json().get("next_cursor")
        if cursor:
            SEEN.add((_sort(case.query), cursor))
