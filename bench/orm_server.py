"""One of bench/orm_apps.py's apps as a module uvicorn can serve, so that the anchors
are measured over HTTP and on the wire as the service is (issue 24).

    ORM_APP=fastapi_orm_features SERVICE_PACKAGE=my_service DATABASE_URL=... \\
    CURSOR_SECRET=... uvicorn orm_server:app --app-dir bench

`ORM_APP` names the app (`fastapi_orm`, `fastapi_orm_features`, `usual`, `s3rius`,
`fullstack`); it runs on the rendered service's models and schemas, imported from
`SERVICE_PACKAGE`. `/health` answers 200 for the benchmark's readiness check.
"""

import importlib
import os

import orm_apps
from fastapi import FastAPI

BUILDERS = {
    "fastapi_orm": orm_apps.lean_app,
    "fastapi_orm_features": orm_apps.lean_features_app,
    "usual": orm_apps.usual_app,
    "s3rius": orm_apps.s3rius_app,
    "fullstack": orm_apps.fullstack_app,
}


def models(package: str) -> orm_apps.Models:
    """The rendered service's mapped classes and schemas, as bench/layers.py takes them."""
    importlib.import_module(f"{package}.models")  # every mapper, so relationships resolve
    schemas = importlib.import_module(f"{package}.projects.schemas")
    pagination = importlib.import_module(f"{package}.kit.http.pagination")
    return orm_apps.Models(
        project=importlib.import_module(f"{package}.projects.models").Project,
        task=importlib.import_module(f"{package}.tasks.models").Task,
        read=schemas.ProjectRead,
        with_tasks=schemas.ProjectWithTasks,
        create=schemas.ProjectCreate,
        offset_page=pagination.OffsetPage,
        cursor_page=pagination.CursorPage,
    )


def build() -> FastAPI:
    built = BUILDERS[os.environ["ORM_APP"]](
        models(os.environ["SERVICE_PACKAGE"]),
        os.environ["DATABASE_URL"],
        os.environ["CURSOR_SECRET"],
    )

    @built.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return built


app = build()
