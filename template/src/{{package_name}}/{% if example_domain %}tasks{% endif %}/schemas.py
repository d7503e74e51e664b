from datetime import datetime
from typing import Annotated
from typing import Literal

from pydantic import BaseModel
from pydantic import BeforeValidator
from pydantic import ConfigDict
from pydantic import Field

from ..entity import Key
from ..kit.http.schemas import Omittable
from ..kit.http.schemas import StorableDatetime
from ..kit.http.schemas import StorableStr
from ..kit.http.schemas import Version
from ..kit.http.schemas import json_integer
from ..schemas import EntityRead
from .models import TaskStatus

TaskTitle = Annotated[StorableStr, Field(min_length=1, max_length=200)]
TaskPriority = Annotated[int, Field(ge=0, le=5), BeforeValidator(json_integer)]
TaskSort = Literal[
    "created_at", "-created_at", "updated_at", "-updated_at", "priority", "-priority"
]


class TaskCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: TaskTitle
    status: TaskStatus = "todo"
    priority: TaskPriority = 0
    due_at: StorableDatetime | None = None


class TaskUpdate(BaseModel):
    """Only the fields sent are changed; `version` is the one the client last read."""

    model_config = ConfigDict(extra="forbid")

    version: Version
    title: Omittable[TaskTitle] = None
    status: Omittable[TaskStatus] = None
    priority: Omittable[TaskPriority] = None
    due_at: StorableDatetime | None = None  # null clears it


class TaskRead(EntityRead):
    project_id: Key
    title: str
    status: TaskStatus
    priority: int
    due_at: datetime | None
