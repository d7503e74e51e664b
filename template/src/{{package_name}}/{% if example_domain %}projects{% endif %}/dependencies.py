from typing import Annotated

from fastapi import Depends
from fastapi import Request

from ..api.dependencies import app_settings
from ..db.session import request_session
from .service import ProjectService


async def project_service(request: Request) -> ProjectService:
    """One dependency rather than three nested ones: FastAPI resolves each on every request."""
    return ProjectService(request_session(request), await app_settings(request))


Projects = Annotated[ProjectService, Depends(project_service)]
