from typing import Annotated

from fastapi import Depends
from fastapi import Request

from ..api.dependencies import app_settings
from ..db.session import request_session
from .service import TaskService


async def task_service(request: Request) -> TaskService:
    """One dependency rather than three nested ones: FastAPI resolves each on every request."""
    return TaskService(request_session(request), await app_settings(request))


Tasks = Annotated[TaskService, Depends(task_service)]
