from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from typing import ClassVar

from ..entity import Key
from ..kit import ReadSession
from ..kit import Service
from ..kit import WriteSession
from ..kit import unit_of_work
from ..kit.cache.entries import Cached
from ..kit.db.keys import AnyKey
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


# What else happens when a task is marked done, in the unit of work that marks it (so
# that it commits with the change, or not at all): a render with background jobs adds
# the webhook's job here (webhook.py).
OnDone = Callable[[WriteSession, Task], Awaitable[None]]


class TaskService(Service[Task]):
    repository = TaskRepository
    resource = "task"
    # `read` answers a get by id from the cache, once one is configured.
    cached = Cached(TaskRead)
    on_done: ClassVar[list[OnDone]] = []

    @unit_of_work
    async def update(
        self, session: WriteSession, id: AnyKey, version: int, values: Mapping[str, object]
    ) -> Task:
        if not self.on_done:
            return await super().update(session, id, version, values)
        was_done = (await self.get(session, id)).status == "done"
        task = await super().update(session, id, version, values)
        if task.status == "done" and not was_done:
            for then in self.on_done:
                await then(session, task)
        return task

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
