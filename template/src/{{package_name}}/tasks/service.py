import uuid
from typing import ClassVar

from sqlalchemy.ext.asyncio import AsyncSession

from ..core.config import Settings
from ..core.errors import NotFound
from ..db.pagination import Page
from ..db.service import CrudService
from ..projects.repository import ProjectRepository
from .models import Task
from .repository import TaskRepository
from .schemas import TaskCreate


class TaskService(CrudService[Task]):
    repository: TaskRepository
    resource = "task"
    constraint_messages: ClassVar[dict[str, str]] = {
        "uq_task_project_id_title": "this project already has a task with this title",
        "fk_task_project_id_project": "the project does not exist",
        "ck_task_priority_range": "priority must be between 0 and 5",
        "ck_task_status": "status must be one of todo, doing, done",
    }

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        super().__init__(session, settings)
        self.repository = TaskRepository(session)

    async def _require_project(self, project_id: uuid.UUID) -> None:
        if not await ProjectRepository(self.session).exists(id=project_id, deleted_at=None):
            raise NotFound("project", project_id)

    async def create(self, project_id: uuid.UUID, data: TaskCreate) -> Task:
        async def work() -> Task:
            await self._require_project(project_id)
            return await self.repository.create(project_id=project_id, **data.model_dump())

        return await self.transaction(work)

    async def page_in_project(
        self,
        project_id: uuid.UUID,
        *,
        status: str | None,
        page: int,
        size: int,
        sort: str,
    ) -> Page[Task]:
        await self._require_project(project_id)
        repo = self.repository
        stmt = repo.order(repo.in_project(project_id, status), [sort])
        return await repo.paginate_offset(stmt, page=page, size=size)
