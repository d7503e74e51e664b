from ..core.errors import NotFound
from ..db.keys import Key
from ..db.pagination import Page
from ..db.resource import Service
from ..db.session import ReadSession
from ..db.session import WriteSession
from ..db.session import unit_of_work
from ..projects.repository import ProjectRepository
from .models import Task
from .repository import TaskRepository
from .schemas import TaskCreate


async def _require_project(session: ReadSession, project_id: Key) -> None:
    if not await ProjectRepository(session).exists(id=project_id):
        raise NotFound("project", project_id)


class TaskService(Service[Task]):
    repository = TaskRepository
    resource = "task"

    @unit_of_work
    async def create(self, session: WriteSession, project_id: Key, data: TaskCreate) -> Task:
        await _require_project(session, project_id)
        return await TaskRepository(session).create(project_id=project_id, **data.model_dump())

    async def page_in_project(
        self,
        session: ReadSession,
        project_id: Key,
        *,
        status: str | None,
        page: int,
        size: int,
        sort: str,
    ) -> Page[Task]:
        await _require_project(session, project_id)
        repo = TaskRepository(session)
        stmt = repo.order(repo.in_project(project_id, status), [sort])
        return await repo.paginate_offset(stmt, page=page, size=size)


tasks = TaskService()
