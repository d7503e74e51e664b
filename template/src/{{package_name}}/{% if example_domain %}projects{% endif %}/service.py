from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from ..entity import Key
from ..kit import ReadSession
from ..kit import Service
from ..kit import WriteSession
from ..kit import unit_of_work
from ..kit.auth.dependencies import check_owner
from ..kit.auth.principal import Principal
from ..kit.cache.entries import Cached
from ..kit.errors import NotFound
from ..kit.errors import StaleVersion
from ..kit.repository.pagination import CursorCodec
from ..kit.repository.pagination import KeysetPage
from ..kit.repository.pagination import Page
from ..tasks.models import Task
from ..tasks.repository import TaskRepository
from ..tasks.schemas import TaskCreate
from .models import Project
from .repository import ProjectRepository
from .schemas import ProjectCreate
from .schemas import ProjectRead

# The permissions the projects' routes require, and the one that may change any project.
READ = "projects:read"
WRITE = "projects:write"
ADMIN = "projects:admin"


@dataclass(frozen=True, slots=True)
class WithTasks:
    """A project (its attributes read through), the first of its live tasks, how many
    it has, and the cursor that lists the rest."""

    project: Project
    tasks: list[Task]
    tasks_total: int
    tasks_next: str | None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.project, name)


def _with_tasks(project: Project, tasks: list[Task], total: int, codec: CursorCodec) -> WithTasks:
    after = None
    if len(tasks) < total:
        # The position `scroll_in_project` continues from, in its default sort.
        after = codec.encode("created_at", (tasks[-1].created_at, tasks[-1].id))
    return WithTasks(project, tasks, total, after)


class ProjectService(Service[Project]):
    repository = ProjectRepository
    resource = "project"
    # `read` answers a get by id from the cache, once one is configured.
    cached = Cached(ProjectRead)

    async def page(self, session: ReadSession, *, page: int, size: int, sort: str) -> Page[Project]:
        repo = ProjectRepository(session)
        return await repo.paginate_offset(repo.order(repo.select(), [sort]), page=page, size=size)

    async def scroll(
        self, session: ReadSession, codec: CursorCodec, *, cursor: str | None, size: int, sort: str
    ) -> KeysetPage[Project]:
        repo = ProjectRepository(session)
        return await repo.paginate_cursor(
            repo.select(), codec=codec, sort=sort, cursor=cursor, size=size
        )

    async def page_with_tasks(
        self, session: ReadSession, codec: CursorCodec, *, page: int, size: int, tasks: int
    ) -> Page[WithTasks]:
        """Parents, each with its first `tasks` live children and a cursor to the rest:
        three statements, whatever the page size, and a bounded body."""
        repo = ProjectRepository(session)
        stmt = repo.select().order_by(Project.created_at)
        found = await repo.paginate_offset(stmt, page=page, size=size)
        ids = [project.id for project in found.items]
        first = await TaskRepository(session).first_of_each(ids, tasks)
        items = [_with_tasks(p, *first.get(p.id, ([], 0)), codec) for p in found.items]
        return Page(items=items, total=found.total, page=found.page, size=found.size)

    async def batch(
        self, session: ReadSession, *, after: tuple[object, object] | None, size: int
    ) -> list[Project]:
        """The next `size` live projects in (created_at, id) order after `after`."""
        repo = ProjectRepository(session)
        return await repo.after(repo.select(), Project.created_at, after, size=size)

    @unit_of_work
    async def create(
        self, session: WriteSession, data: ProjectCreate, *, owner: str | None = None
    ) -> Project:
        return await ProjectRepository(session).create(**data.model_dump(), owner=owner)

    # The owner's operations: `caller` must own the project, or hold ADMIN (check_owner).

    @unit_of_work
    async def update_owned(
        self,
        session: WriteSession,
        caller: Principal,
        id: Key,
        version: int,
        values: Mapping[str, object],
    ) -> Project:
        project = await self.get(session, id)
        check_owner(caller, project.owner, unless=ADMIN)
        if project.version != version:
            raise StaleVersion(self.resource, expected=version, actual=project.version)
        return await ProjectRepository(session).update(project, values)

    @unit_of_work
    async def delete_owned(self, session: WriteSession, caller: Principal, id: Key) -> None:
        project = await self.get(session, id)
        check_owner(caller, project.owner, unless=ADMIN)
        await ProjectRepository(session).delete(project)

    @unit_of_work
    async def restore_owned(self, session: WriteSession, caller: Principal, id: Key) -> Project:
        project = await ProjectRepository(session).get_including_deleted(id)
        if project is None:
            raise NotFound(self.resource, id)
        check_owner(caller, project.owner, unless=ADMIN)
        return await self.restore(session, id)

    @unit_of_work
    async def get_or_create(
        self, session: WriteSession, slug: str, name: str
    ) -> tuple[Project, bool]:
        return await ProjectRepository(session).get_or_create({"name": name}, slug=slug)

    @unit_of_work
    async def create_with_tasks(
        self, session: WriteSession, data: ProjectCreate, tasks: Sequence[TaskCreate]
    ) -> Project:
        """One unit of work across two repositories: all rows are stored, or none."""
        project = await ProjectRepository(session).create(**data.model_dump())
        await TaskRepository(session).create_many(
            [{"project_id": project.id, **task.model_dump()} for task in tasks]
        )
        return project

    @unit_of_work
    async def add_tasks_best_effort(
        self, session: WriteSession, project: Project, tasks: Sequence[TaskCreate]
    ) -> tuple[list[Task], list[str]]:
        """Each task in its own savepoint: a duplicate title skips that task, not the batch."""
        repo = TaskRepository(session)
        created: list[Task] = []
        skipped: list[str] = []
        for task in tasks:
            try:
                async with session.begin_nested():
                    created.append(await repo.create(project_id=project.id, **task.model_dump()))
            except IntegrityError:
                skipped.append(task.title)
        return created, skipped


projects = ProjectService()
