from collections.abc import Sequence
from typing import ClassVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from ..core.config import Settings
from ..db.pagination import CursorPage
from ..db.pagination import Page
from ..db.service import CrudService
from ..tasks.models import Task
from ..tasks.repository import TaskRepository
from ..tasks.schemas import TaskCreate
from .models import Project
from .repository import ProjectRepository
from .schemas import ProjectCreate


class ProjectService(CrudService[Project]):
    repository: ProjectRepository
    resource = "project"
    constraint_messages: ClassVar[dict[str, str]] = {
        "uq_project_slug": "a project with this slug already exists",
        "uq_task_project_id_title": "this project already has a task with this title",
    }

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        super().__init__(session, settings)
        self.repository = ProjectRepository(session)

    async def page(self, *, page: int, size: int, sort: str) -> Page[Project]:
        repo = self.repository
        return await repo.paginate_offset(repo.order(repo.select(), [sort]), page=page, size=size)

    async def scroll(self, *, cursor: str | None, size: int, sort: str) -> CursorPage[Project]:
        repo = self.repository
        return await repo.paginate_cursor(
            repo.select(), codec=self.codec, sort=sort, cursor=cursor, size=size
        )

    async def page_with_tasks(self, *, page: int, size: int) -> Page[Project]:
        """Parents and their live children in three statements, whatever the page size."""
        repo = self.repository
        live_tasks = selectinload(Project.tasks.and_(Task.deleted_at.is_(None)))
        stmt = repo.select().options(live_tasks).order_by(Project.created_at)
        return await repo.paginate_offset(stmt, page=page, size=size)

    async def create(self, data: ProjectCreate) -> Project:
        return await self.transaction(lambda: self.repository.create(**data.model_dump()))

    async def get_or_create(self, slug: str, name: str) -> tuple[Project, bool]:
        return await self.transaction(
            lambda: self.repository.get_or_create({"name": name}, slug=slug)
        )

    async def create_with_tasks(self, data: ProjectCreate, tasks: Sequence[TaskCreate]) -> Project:
        """One unit of work across two repositories: all rows are stored, or none."""

        async def work() -> Project:
            project = await self.repository.create(**data.model_dump())
            await TaskRepository(self.session).create_many(
                [{"project_id": project.id, **task.model_dump()} for task in tasks]
            )
            return project

        return await self.transaction(work)

    async def add_tasks_best_effort(
        self, project: Project, tasks: Sequence[TaskCreate]
    ) -> tuple[list[Task], list[str]]:
        """Each task in its own savepoint: a duplicate title skips that task, not the batch."""

        async def work() -> tuple[list[Task], list[str]]:
            repo = TaskRepository(self.session)
            created: list[Task] = []
            skipped: list[str] = []
            for task in tasks:
                try:
                    async with self.session.begin_nested():
                        created.append(
                            await repo.create(project_id=project.id, **task.model_dump())
                        )
                except IntegrityError:
                    skipped.append(task.title)
            return created, skipped

        return await self.transaction(work)
