from typing import ClassVar

from sqlalchemy import Select

from ..db.keys import Key
from ..db.resource import Repository
from .models import Task


class TaskRepository(Repository[Task]):
    model = Task
    sortable: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at", "priority"})

    def in_project(self, project_id: Key, status: str | None = None) -> Select[Task]:
        stmt = self.select().where(Task.project_id == project_id)
        return stmt if status is None else stmt.where(Task.status == status)
