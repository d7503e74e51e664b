"""The OpenAPI document, completed with what only the settings and the middleware know.

- A query parameter declared with `maximum_from("max_page_size")` gets that setting's
  value as its `maximum` (routes are declared before settings exist).
- A parameter (path, query, header, cookie) that may be left out is not also `null`:
  FastAPI spells `str | None` as `anyOf: [string, null]`, but a query string or a header
  carries text, never JSON's null, and a client that sends the text "null" gets a 422.
  Leaving the parameter out is how a client says "none", as `required: false` says.
- Every operation that takes a body documents a 400 (the body is not JSON) and a 413
  (larger than `MAX_BODY_BYTES`, `middleware.BodyLimitMiddleware`).
- A problem is declared where it is sent, `application/problem+json`, with the `Problem`
  schema: FastAPI puts a `responses=` model under `application/json`, which no error
  is sent as, and a generated client then parses no error at all. A 422 FastAPI adds
  by itself (its `HTTPValidationError`) is a problem too: `problems.py` answers it.
- With authentication (AUTH other than none) every operation that asks for the caller
  declares the bearer scheme (the interactive docs' Authorize sends the token), a 401, a
  403 and a 503 (the provider's keys unreachable). Without, the scheme is left out: no
  operation needs a token.
- Operation ids are the routes' names (`create_project`), which generated clients take
  as their method names; `operation_id` gives them. Two routes of one name keep FastAPI's
  long ids (name, path and method), which cannot collide.
"""

import json
import re
import warnings
from collections import Counter
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from ..auth.dependencies import BEARER
from ..auth.dependencies import BEARER_SCHEME
from ..auth.dependencies import asks_for_the_caller
from ..settings import Settings
from ..settings.password import PASSWORD_TOKEN_URL
from .problems import PROBLEM_JSON
from .problems import Problem
from .problems import error_responses

_SETTING = "x-maximum-setting"
_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_FASTAPI_422 = {"$ref": "#/components/schemas/HTTPValidationError"}
_DUPLICATE = "Duplicate Operation ID"
PASSWORD_FORM = {
    "type": "oauth2",
    "flows": {"password": {"tokenUrl": PASSWORD_TOKEN_URL, "scopes": {}}},
}


def operation_id(route: APIRoute) -> str:
    """The `generate_unique_id_function` of the app: a route's id is its name."""
    return route.name


def maximum_from(setting: str) -> dict[str, Any]:
    """`json_schema_extra` for a parameter whose maximum is the setting named `setting`."""
    return {_SETTING: setting}


def complete_openapi(app: FastAPI, settings: Settings) -> None:
    """Wrap `app.openapi` so the document it builds (once) is completed as above."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            with warnings.catch_warnings():  # `_unique_ids` resolves them
                warnings.filterwarnings("ignore", message=_DUPLICATE)
                document = build()
            _complete(document, settings, _asking_for_the_caller(app))
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _asking_for_the_caller(app: FastAPI) -> set[tuple[str, str]]:
    """The operations (path, method) whose route asks who the caller is."""
    return {
        (route.path_format, method.lower())
        for route in app.routes
        if isinstance(route, APIRoute) and asks_for_the_caller(route.dependant)
        for method in route.methods or ()
    }


def _complete(document: dict[str, Any], settings: Settings, secured: set[tuple[str, str]]) -> None:
    body_errors = error_responses(400, 413)
    auth_errors = error_responses(401, 403, 503)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    if settings.auth != "none":
        schemes = document["components"].setdefault("securitySchemes", {})
        # AUTH=password: the service issues the tokens, and Authorize logs in with the
        # OAuth2 password form (kit/auth/password/) instead of asking for a token.
        schemes[BEARER_SCHEME] = PASSWORD_FORM if settings.auth == "password" else BEARER
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            if settings.auth != "none" and (path, method) in secured:
                operation.setdefault("security", []).append({BEARER_SCHEME: []})
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                _not_null(schema)
                if _SETTING in schema:
                    schema["maximum"] = getattr(settings, schema.pop(_SETTING))
            if "requestBody" in operation:
                for status, response in body_errors.items():
                    operation["responses"].setdefault(str(status), _as_openapi(response))
            if "security" in operation:
                for status, response in auth_errors.items():
                    operation["responses"].setdefault(str(status), _as_openapi(response))
            for response in operation.get("responses", {}).values():
                _as_sent(response)
    if _uses(document, _PROBLEM):
        schemas.setdefault("Problem", Problem.model_json_schema())
    if not _uses(document, _FASTAPI_422):
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
    _unique_ids(document)


def _not_null(schema: dict[str, Any]) -> None:
    """Drop `null` from a parameter's `anyOf`, and the `anyOf` when one schema is left."""
    choices = [choice for choice in schema.get("anyOf", ()) if choice != {"type": "null"}]
    if "anyOf" not in schema or len(choices) == len(schema["anyOf"]):
        return
    if len(choices) == 1:
        del schema["anyOf"]
        schema.update(choices[0])
    else:
        schema["anyOf"] = choices


def _as_sent(response: dict[str, Any]) -> None:
    """Declare a problem response under the media type it is sent as, with its schema."""
    content = response.get("content", {})
    fastapi_422 = content.get("application/json", {}).get("schema") == _FASTAPI_422
    if PROBLEM_JSON not in content and not fastapi_422:
        return
    if content.get("application/json", {}).get("schema") in (_PROBLEM, _FASTAPI_422):
        del content["application/json"]
    content[PROBLEM_JSON] = {"schema": dict(_PROBLEM)}


def _uses(document: dict[str, Any], reference: dict[str, str]) -> bool:
    return json.dumps(reference)[1:-1] in json.dumps(document)


def _unique_ids(document: dict[str, Any]) -> None:
    """Give FastAPI's long ids (name, path, method) to operations that share a name."""
    operations = [
        (path, method, operation)
        for path, methods in document.get("paths", {}).items()
        for method, operation in methods.items()
    ]
    seen = Counter(operation.get("operationId") for _, _, operation in operations)
    for path, method, operation in operations:
        name = operation.get("operationId")
        if name is not None and seen[name] > 1:
            operation["operationId"] = re.sub(r"\W", "_", f"{name}{path}") + f"_{method}"


def _as_openapi(response: dict[str, Any]) -> dict[str, Any]:
    """A FastAPI `responses=` entry as the document spells it."""
    return {
        "description": response["description"],
        "content": {
            media: {"schema": {"$ref": "#/components/schemas/Problem"}}
            for media in response["content"]
        },
    }
