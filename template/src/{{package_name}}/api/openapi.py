"""The OpenAPI document, completed with what only the settings and the middleware know.

- A query parameter declared with `maximum_from("max_page_size")` gets that setting's
  value as its `maximum` (routes are declared before settings exist).
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
                if _SETTING in schema:
                    schema["maximum"] = getattr(settings, schema.pop(_SETTING))
            if "requestBody" in operation:
                for status, response in body_errors.items():
                    operation["responses"].setdefault(str(status), _as_openapi(response))
                schemas = document.setdefault("components", {}).setdefault("schemas", {})
                schemas.setdefault("Problem", Problem.model_json_schema())


def _as_openapi(response: dict[str, Any]) -> dict[str, Any]:
    """A FastAPI `responses=` entry as the document spells it."""
    return {
        "description": response["description"],
        "content": {
            media: {"schema": {"$ref": "#/components/schemas/Problem"}}
            for media in response["content"]
        },
    }
