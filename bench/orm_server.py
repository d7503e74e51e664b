"""One of bench/orm_apps.py's apps as a module uvicorn can serve, so that the anchors
are measured over HTTP and on the wire as the service is (issue 24).

    ORM_APP=fastapi_orm_features SERVICE_PACKAGE=my_service DATABASE_URL=... \\
    CURSOR_SECRET=... uvicorn orm_server:app --app-dir bench

`ORM_APP` names the app (`fastapi_orm`, `fastapi_orm_features`, `usual`, `s3rius`,
`fullstack`, `benavlabs`); it runs on the rendered service's models and schemas, imported from
`SERVICE_PACKAGE`. `/health` answers 200 for the benchmark's readiness check.
"""

import os

import orm_apps
from fastapi import FastAPI

BUILDERS = {
    "fastapi_orm": orm_apps.lean_app,
    "fastapi_orm_features": orm_apps.lean_features_app,
    "usual": orm_apps.usual_app,
    "s3rius": orm_apps.s3rius_app,
    "fullstack": orm_apps.fullstack_app,
    "benavlabs": orm_apps.benavlabs_app,
}


def build() -> FastAPI:
    built = BUILDERS[os.environ["ORM_APP"]](
        orm_apps.models_of(os.environ["SERVICE_PACKAGE"]),
        os.environ["DATABASE_URL"],
        os.environ["CURSOR_SECRET"],
    )

    @built.get("/health", include_in_schema=False)
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return built


app = build()
