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

A project's slug is unique among all projects for good (a deleted project keeps it), a
task's title unique within its project. Hypothesis draws the same few short strings ("0",
"00") again and again, so most creates of a run asked for a slug or title already taken
and got their 409: the stateful phase had few projects to chain from, and a create that
was a 201 the first time a scenario ran was a 409 when Hypothesis replayed it, which ends
the phase (tests/test_fuzz.py). In valid cases, a slug or a (project, title) the service
has already shown in a response is replaced by a fresh one of the same form.

Cases generated to be invalid are sent as generated: the service must refuse them.
"""

import itertools
import json
import os
import re
from collections.abc import Callable, Iterator
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
# The slug of every project the service has shown, (project id, title) of every task, and
# each task's project: a valid case that asks for one of them again gets a fresh one.
SLUGS: set[str] = set()
TITLES: set[tuple[str, str]] = set()
TASK_PROJECT: dict[str, str] = {}
FRESH = itertools.count(1)
SLUG_LENGTH, TITLE_LENGTH = 100, 200  # the schemas' maxLength


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
    _unclaimed(case)


def _unclaimed(case: Any) -> None:
    """In a create or an update, a slug, or a title in its project, that no row has held."""
    body = case.body
    if not isinstance(body, dict):
        return
    if isinstance(body.get("slug"), str):
        # The slug pattern: words of [a-z0-9] joined by single hyphens.
        body["slug"] = _fresh(body["slug"], SLUGS.__contains__, SLUG_LENGTH, "-f")
    params = case.path_parameters or {}
    project = params.get("project_id", TASK_PROJECT.get(str(params.get("task_id"))))
    if isinstance(body.get("title"), str) and project is not None:
        in_project = {title for owner, title in TITLES if owner == str(project)}
        body["title"] = _fresh(body["title"], in_project.__contains__, TITLE_LENGTH, " #")


def _fresh(value: str, taken: Callable[[str], bool], length: int, separator: str) -> str:
    """`value` if it is free, else `value` cut to fit and a number no case has used yet."""
    fresh = value
    while taken(fresh):
        suffix = f"{separator}{next(FRESH)}"
        fresh = value[: length - len(suffix)].rstrip(separator[0]) + suffix
    return fresh


def _rows(value: Any) -> Iterator[dict[str, Any]]:
    """Every object in a JSON document: a row, a page's rows, a project's tasks."""
    if isinstance(value, dict):
        yield value
        value = list(value.values())
    if isinstance(value, list):
        for item in value:
            yield from _rows(item)


def _is_json(response: Any) -> bool:
    types = response.headers.get("content-type", [])
    return bool(response.content) and any(t.startswith("application/json") for t in types)


@schemathesis.hook
def after_call(context: Any, case: Any, response: Any) -> None:
    """Every cursor the service issues during the run is one a later case may present; every
    slug and task title it shows is taken."""
    if 200 <= response.status_code < 300 and _is_json(response):
        for row in _rows(response.json()):
            if isinstance(row.get("slug"), str):
                SLUGS.add(row["slug"])
            if isinstance(row.get("title"), str) and "project_id" in row:
                TITLES.add((str(row["project_id"]), row["title"]))
                TASK_PROJECT[str(row.get("id"))] = str(row["project_id"])
    if case.operation.path in ISSUED and response.status_code == 200:
        cursor = response.json().get("next_cursor")
        if cursor:
            SEEN.add((_sort(case.query), cursor))
