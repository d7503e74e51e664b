from typing import Annotated

from fastapi import Depends

from ..api.dependencies import AppSettings
from ..db.session import DBSession
from .service import ProjectService


async def project_service(session: DBSession, settings: AppSettings) -> ProjectService:
    return ProjectService(session, settings)


Projects = Annotated[ProjectService, Depends(project_service)]
