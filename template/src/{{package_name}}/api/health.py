"""Liveness (no I/O) and readiness (the database answers and its schema is current)."""

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
from ..db.migrations import current_revision

log = logging.getLogger(__name__)
router = APIRouter(prefix="/health", tags=["health"])


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str] = {}


async def _check(db: DatabaseManager, expected: str | None) -> dict[str, str]:
    for attempt in (1, 2):
        try:
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                revision = await conn.run_sync(current_revision) if expected else None
            break
        except DBAPIError as error:
            # A pooled connection the server dropped says nothing of the server now.
            if not error.connection_invalidated or attempt == 2:
                raise
    behind = expected is not None and revision != expected
    return {"database": "ok", "schema": "behind" if behind else "ok"}


@router.get("/live", response_model=Health, summary="The process is up (no I/O)")
async def live() -> Health:
    return Health(status="ok")


@router.get(
    "/ready",
    response_model=Health,
    summary="The database answers and its schema is at the latest migration",
    responses={503: {"model": Health, "description": "Not ready; retry later"}},
)
async def ready(request: Request, response: Response) -> Health:
    db: DatabaseManager = request.app.state.db
    try:
        async with asyncio.timeout(db.settings.health_timeout):
            # A pooled connection the server dropped says nothing of the server now.
            checks = await _check(db, request.app.state.schema_head)
    except Exception as error:  # any failure to answer in time means "not ready"
        log.warning("readiness check failed: %s", type(error).__name__)
        checks = {"database": "unreachable"}
    if checks == {"database": "ok", "schema": "ok"}:
        return Health(status="ok", checks=checks)
    response.status_code = 503
    response.headers["Retry-After"] = "5"
    return Health(status="unavailable", checks=checks)
