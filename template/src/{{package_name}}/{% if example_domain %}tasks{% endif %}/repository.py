from collections.abc import Sequence
from typing import Any
from typing import ClassVar

from sqlalchemy import Select
from sqlalchemy import bindparam
from sqlalchemy import func
from sqlalchemy import select
from sqlalchemy.orm import aliased

from ..entity import Key
from ..kit import Repository
from .models import Task

# `first_of_each`'s statement, built on first use (it depends on the class alone).
_FIRST_OF_EACH: dict[type[Any], Select[Any]] = {}


class TaskRepository(Repository[Task]):
    model = Task
    sortable: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at", "priority"})

    def in_project(self, project_id: Key, status: str | None = None) -> Select[Task]:
        stmt = self.select().where(Task.project_id == project_id)
        return stmt if status is None else stmt.where(Task.status == status)

    async def first_of_each(
        self, project_ids: Sequence[Key], size: int
    ) -> dict[Key, tuple[list[Task], int]]:
        """Each project's first `size` visible tasks in (created_at, id) order, and how
        many it has: one statement for every project, however many tasks each holds."""
        if not project_ids:
            return {}
        stmt = _FIRST_OF_EACH.get(type(self))
        if stmt is None:
            stmt = _FIRST_OF_EACH[type(self)] = self._first_of_each()
        found: dict[Key, tuple[list[Task], int]] = {}
        for task, total in await self.session.execute(stmt, {"ids": project_ids, "n": size}):
            found.setdefault(task.project_id, ([], total))[0].append(task)
        return found

    def _first_of_each(self) -> Select[Any]:
        ranked = (
            self.select()
            .where(Task.project_id.in_(bindparam("ids", expanding=True)))
            .add_columns(
                func.row_number()
                .over(partition_by=Task.project_id, order_by=(Task.created_at, Task.id))
                .label("rank_in_project"),
                func.count().over(partition_by=Task.project_id).label("in_project"),
            )
            .subquery()
        )
        task = aliased(Task, ranked)
        return (
            select(task, ranked.c.in_project)
            .where(ranked.c.rank_in_project <= bindparam("n"))
            .order_by(ranked.c.project_id, ranked.c.rank_in_project)
        )
