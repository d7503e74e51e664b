"""The OpenAPI document, completed with what only the settings and the middleware know.

- A query parameter declared with `maximum_from("max_page_size")` gets that setting's
  value as its `maximum` (routes are declared before settings exist).
- A parameter (path, query, header, cookie) that may be left out is not also `null`:
  FastAPI spells `str | None` as `anyOf: [string, null]`, but a query string or a header
  carries text, never JSON's null, and a client that sends the text "null" gets a 422.
  Leaving the parameter out is how a client says "none", as `required: false` says.
- Every operation that takes a body documents a 400 (the body is not JSON) and a 413
  (larger than `MAX_BODY_BYTES`, `middleware.BodyLimitMiddleware`).
"""

from typing import Any

from fastapi import FastAPI

from ..core.config import Settings
from .problems import Problem
from .problems import error_responses

_SETTING = "x-maximum-setting"


def maximum_from(setting: str) -> dict[str, Any]:
    """`json_schema_extra` for a parameter whose maximum is the setting named `setting`."""
    return {_SETTING: setting}


def complete_openapi(app: FastAPI, settings: Settings) -> None:
    """Wrap `app.openapi` so the document it builds (once) is completed as above."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            _complete(document, settings)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(document: dict[str, Any], settings: Settings) -> None:
    body_errors = error_responses(400, 413)
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                _not_null(schema)
                if _SETTING in schema:
                    schema["maximum"] = getattr(settings, schema.pop(_SETTING))
            if "requestBody" in operation:
                for status, response in body_errors.items():
                    operation["responses"].setdefault(str(status), _as_openapi(response))
                schemas = document.setdefault("components", {}).setdefault("schemas", {})
                schemas.setdefault("Problem", Problem.model_json_schema())


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


def _as_openapi(response: dict[str, Any]) -> dict[str, Any]:
    """A FastAPI `responses=` entry as the document spells it."""
    return {
        "description": response["description"],
        "content": {
            media: {"schema": {"$ref": "#/components/schemas/Problem"}}
            for media in response["content"]
        },
    }
