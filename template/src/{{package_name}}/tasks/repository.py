import uuid
from typing import ClassVar

from sqlalchemy import Select

from ..db.repository import BaseRepository
from .models import Task


class TaskRepository(BaseRepository[Task]):
    model = Task
    sortable: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at", "priority"})

    def in_project(self, project_id: uuid.UUID, status: str | None = None) -> Select[Task]:
        stmt = self.select().where(Task.project_id == project_id)
        return stmt if status is None else stmt.where(Task.status == status)
