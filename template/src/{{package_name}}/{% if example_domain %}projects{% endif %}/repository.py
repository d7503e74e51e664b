from typing import ClassVar

from ..kit import Repository
from .models import Project


class ProjectRepository(Repository[Project]):
    model = Project
    sortable: ClassVar[frozenset[str]] = frozenset({"created_at", "updated_at", "name"})

    async def get_by_slug(self, slug: str) -> Project | None:
        return await self.get_one_or_none(self.select().where(Project.slug == slug))
