from ..entity import Key
from ..kit import ReadSession
from ..kit import Service
from ..kit import WriteSession
from ..kit import unit_of_work
from ..kit.cache.entries import Cached
from ..kit.errors import NotFound
from ..kit.repository.pagination import CursorCodec
from ..kit.repository.pagination import KeysetPage
from ..kit.repository.pagination import Page
from ..projects.repository import ProjectRepository
from .models import Task
from .repository import TaskRepository
from .schemas import TaskCreate
from .schemas import TaskRead


async def _require_project(session: ReadSession, project_id: Key) -> None:
    if not await ProjectRepository(session).exists(id=project_id):
        raise NotFound("project", project_id)


class TaskService(Service[Task]):
    repository = TaskRepository
    resource = "task"
    # `read` answers a get by id from the cache, once one is configured.
    cached = Cached(TaskRead)

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

    async def scroll_in_project(
        self,
        session: ReadSession,
        codec: CursorCodec,
        project_id: Key,
        *,
        status: str | None,
        cursor: str | None,
        size: int,
        sort: str,
    ) -> KeysetPage[Task]:
        await _require_project(session, project_id)
        repo = TaskRepository(session)
        return await repo.paginate_cursor(
            repo.in_project(project_id, status), codec=codec, sort=sort, cursor=cursor, size=size
        )


tasks = TaskService()
