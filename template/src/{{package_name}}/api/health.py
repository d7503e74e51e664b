"""Liveness (no I/O) and readiness (the database answers and its schema is current).

Readiness asks the database on a connection of its own (`DatabaseManager.probe_engine`),
never one of the request pools: a pod whose pools are saturated is slow, not broken,
and reporting it unready would take it out of the Service just when every pod is
busiest, turning load into an outage. Saturation answers 503 with Retry-After from the
pool timeout instead.
"""

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter
from fastapi import Request
from fastapi import Response
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from ..db.engine import DatabaseManager
from ..db.migrations import Schema
from ..db.migrations import current_revision

log = logging.getLogger(__name__)
router = APIRouter(prefix="/health", tags=["health"])
# A newer release migrated first ("ahead") is the normal state of a rolling deploy.
READY_SCHEMAS = frozenset({"ok", "ahead"})


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


async def _check(db: DatabaseManager, schema: Schema | None) -> dict[str, str]:
    for attempt in (1, 2):
        try:
            async with db.probe_engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                revision = await conn.run_sync(current_revision) if schema else None
            break
        except DBAPIError as error:
            # A pooled connection the server dropped says nothing of the server now.
            if not error.connection_invalidated or attempt == 2:
                raise
    return {"database": "ok", "schema": schema.state(revision) if schema else "ok"}


@router.get("/live", response_model=Health, summary="The process is up (no I/O)")
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    summary="The database answers, and its schema is this code's or a newer release's",
    responses={503: {"model": Health, "description": "Not ready; retry later"}},
)
async def ready(request: Request, response: Response) -> Health:
    db: DatabaseManager = request.app.state.db
    try:
        async with asyncio.timeout(db.settings.health_timeout):
            checks = await _check(db, request.app.state.schema)
    except Exception as error:  # any failure to answer in time means "not ready"
        log.warning("readiness check failed: %s", type(error).__name__)
        checks = {"database": "unreachable"}
    if checks.get("database") == "ok" and checks.get("schema") in READY_SCHEMAS:
        return Health(status="ok", checks=checks)
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return Health(status="unavailable", checks=checks)
