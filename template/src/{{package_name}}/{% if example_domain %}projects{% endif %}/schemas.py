from typing import Annotated
from typing import Literal

from pydantic import BaseModel
from pydantic import ConfigDict
from pydantic import Field

from ..kit.http.schemas import Omittable
from ..kit.http.schemas import StorableStr
from ..kit.http.schemas import Version
from ..schemas import EntityRead
from ..tasks.schemas import TaskRead

ProjectName = Annotated[StorableStr, Field(min_length=1, max_length=200)]
ProjectSlug = Annotated[
    StorableStr, Field(min_length=1, max_length=100, pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
]
ProjectDescription = Annotated[StorableStr, Field(max_length=10_000)]
ProjectSort = Literal["created_at", "-created_at", "updated_at", "-updated_at", "name", "-name"]


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: ProjectName
    slug: ProjectSlug
    description: ProjectDescription = ""


class ProjectUpdate(BaseModel):
    """Only the fields sent are changed; `version` is the one the client last read."""

    model_config = ConfigDict(extra="forbid")

    version: Version
    name: Omittable[ProjectName] = None
    slug: Omittable[ProjectSlug] = None
    description: Omittable[ProjectDescription] = None


class ProjectRead(EntityRead):
    name: str
    slug: str
    description: str
    owner: str | None = Field(
        description="Who created the project, who alone may change or delete it; null "
        "when it was made without authentication"
    )


class ProjectWithTasks(ProjectRead):
    tasks: list[TaskRead] = Field(
        description="The first of its live tasks, oldest first, at most MAX_CHILDREN_PER_PARENT"
    )
    tasks_total: int = Field(description="How many live tasks the project has")
    tasks_next: str | None = Field(
        description="When it has more: `cursor` for /projects/{id}/tasks/cursor, which "
        "lists the rest (sort created_at)"
    )
