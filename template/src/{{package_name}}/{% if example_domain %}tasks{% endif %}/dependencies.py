from typing import Annotated

from fastapi import Depends

from ..api.dependencies import AppSettings
from ..db.session import DBSession
from .service import TaskService


async def task_service(session: DBSession, settings: AppSettings) -> TaskService:
    return TaskService(session, settings)


Tasks = Annotated[TaskService, Depends(task_service)]
