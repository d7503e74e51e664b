from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from ..db.pagination import CursorCodec
from ..db.pagination import KeysetPage
from ..db.pagination import Page
from ..db.resource import Service
from ..db.session import ReadSession
from ..db.session import WriteSession
from ..db.session import unit_of_work
from ..tasks.models import Task
from ..tasks.repository import TaskRepository
from ..tasks.schemas import TaskCreate
from .models import Project
from .repository import ProjectRepository
from .schemas import ProjectCreate


class ProjectService(Service[Project]):
    repository = ProjectRepository
    resource = "project"

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

    async def page_with_tasks(self, session: ReadSession, *, page: int, size: int) -> Page[Project]:
        """Parents and their live children in three statements, whatever the page size."""
        repo = ProjectRepository(session)
        tasks = selectinload(Project.tasks.and_(Task.live()))
        stmt = repo.select().options(tasks).order_by(Project.created_at)
        return await repo.paginate_offset(stmt, page=page, size=size)

    async def batch(
        self, session: ReadSession, *, after: tuple[object, object] | None, size: int
    ) -> list[Project]:
        """The next `size` live projects in (created_at, id) order after `after`."""
        repo = ProjectRepository(session)
        return await repo.after(repo.select(), Project.created_at, after, size=size)

    @unit_of_work
    async def create(self, session: WriteSession, data: ProjectCreate) -> Project:
        return await ProjectRepository(session).create(**data.model_dump())

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
