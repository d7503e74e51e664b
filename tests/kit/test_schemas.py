"""The shared input types refuse, per class of input, what the database cannot store."""

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, TypeAdapter, ValidationError
from service.kit.db.keys import IntKeyValue, UUIDKeyValue
from service.kit.db.limits import FIRST_YEAR, LAST_YEAR
from service.kit.http.schemas import Omittable, StorableDatetime, StorableStr

Name = Annotated[StorableStr, Field(min_length=1, max_length=20)]


class Body(BaseModel):
    name: Name
    when: StorableDatetime | None = None


class Change(BaseModel):
    name: Omittable[Name] = None
    when: StorableDatetime | None = None


def errors_of(model: type[BaseModel], raw_json: str) -> list[tuple[Any, ...]]:
    """Validates as FastAPI does (JSON parsed by `json.loads` first); the error locations."""
    try:
        model.model_validate(json.loads(raw_json))
    except ValidationError as error:
        return [e["loc"] for e in error.errors()]
    return []


# JSON escapes, so each class of character arrives exactly as a client can send it.
UNSTORABLE = {
    "NUL": "a\\u0000b",
    "NUL alone": "\\u0000",
    "lone high surrogate": "a\\ud800",
    "lone low surrogate": "\\udfffz",
    "reversed pair": "\\udc00\\ud800",
}
STORABLE = {
    "ASCII": "plain",
    "accents": "Zo\\u00eb \\u00c5ngstr\\u00f6m",
    "CJK": "\\u6f22\\u5b57",
    "astral, as a surrogate pair": "\\ud83d\\ude00",
    "control other than NUL": "tab\\there",
}


def named(escaped: str) -> str:
    return '{"name": "' + escaped + '"}'


@pytest.mark.parametrize("text", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_text_the_database_cannot_store_is_refused_naming_the_field(text: str) -> None:
    assert errors_of(Body, named(text)) == [("name",)]
    assert errors_of(Change, named(text)) == [("name",)]


@pytest.mark.parametrize("text", STORABLE.values(), ids=STORABLE.keys())
def test_any_other_text_is_taken_as_sent(text: str) -> None:
    assert Body.model_validate(json.loads(named(text))).name == json.loads(f'"{text}"')


def test_constraints_added_to_the_text_type_still_apply_and_show() -> None:
    assert errors_of(Body, '{"name": ""}') == [("name",)]
    assert errors_of(Body, json.dumps({"name": "x" * 21})) == [("name",)]
    schema = Body.model_json_schema()["properties"]["name"]
    assert schema["minLength"] == 1 and schema["maxLength"] == 20
    assert schema["pattern"] == r"^[^\x00]*$"


def plus(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


OUT_OF_RANGE = {
    "year 1 at +14:00 (year 0 in UTC)": datetime(1, 1, 1, tzinfo=plus(14)),
    "year 9999 at -14:00 (year 10000 in UTC)": datetime(9999, 12, 31, 23, tzinfo=plus(-14)),
    "the last instant before the first year": datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
    - timedelta(microseconds=1),
    "the first instant after the last year": datetime(LAST_YEAR + 1, 1, 1, tzinfo=UTC),
    "year 999 (before MariaDB's DATETIME)": datetime(999, 12, 31, tzinfo=UTC),
}
IN_RANGE = {
    "the first year's first instant": datetime(FIRST_YEAR, 1, 1, tzinfo=UTC),
    "the first year's first instant at +14:00": datetime(FIRST_YEAR, 1, 1, tzinfo=plus(14)),
    "the last year's last instant": datetime(LAST_YEAR, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    "the last year's last instant at -14:00": datetime(
        LAST_YEAR, 12, 31, 23, 59, 59, 999_999, tzinfo=plus(-14)
    ),
    "today": datetime(2026, 1, 1, 12, tzinfo=UTC),
}


@pytest.mark.parametrize("when", OUT_OF_RANGE.values(), ids=OUT_OF_RANGE.keys())
def test_instants_out_of_the_storable_range_are_refused(when: datetime) -> None:
    body = json.dumps({"name": "x", "when": when.isoformat()})
    assert errors_of(Body, body) == [("when",)]


@pytest.mark.parametrize("when", IN_RANGE.values(), ids=IN_RANGE.keys())
def test_instants_in_range_are_taken(when: datetime) -> None:
    parsed = Body.model_validate_json(json.dumps({"name": "x", "when": when.isoformat()}))
    assert parsed.when == when


@pytest.mark.parametrize(
    "when", ["2026-01-01T00:00:00", "2026-01-01", "yesterday", "0000-01-01T00:00:00Z", 1e20]
)
def test_instants_without_a_zone_or_not_instants_are_refused(when: object) -> None:
    assert errors_of(Body, json.dumps({"name": "x", "when": when})) == [("when",)]


def test_null_in_a_patch_is_refused_where_the_column_takes_none() -> None:
    assert errors_of(Change, '{"name": null}') == [("name",)]
    assert Change.model_validate_json('{"when": null}').model_fields_set == {"when"}
    assert Change.model_validate_json("{}").model_dump(exclude_unset=True) == {}


def test_the_openapi_schema_says_which_fields_take_null() -> None:
    properties = Change.model_json_schema()["properties"]
    assert properties["name"]["type"] == "string" and "default" not in properties["name"]
    assert {"type": "null"} in properties["when"]["anyOf"]


@pytest.mark.parametrize("key", [2**63, -(2**63) - 1, 10**30, "9" * 5000])
def test_integer_keys_out_of_64_bits_are_refused(key: object) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(IntKeyValue).validate_python(key)


@pytest.mark.parametrize("key", [1, 2**63 - 1, -(2**63), "42"])
def test_integer_keys_in_64_bits_are_taken(key: object) -> None:
    assert TypeAdapter(IntKeyValue).validate_python(key) == int(str(key))


@pytest.mark.parametrize("key", ["42", "not-a-key", "", "0" * 33])
def test_malformed_uuid_keys_are_refused(key: str) -> None:
    with pytest.raises(ValidationError):
        TypeAdapter(UUIDKeyValue).validate_python(key)
