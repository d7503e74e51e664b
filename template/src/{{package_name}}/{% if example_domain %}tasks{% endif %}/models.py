from datetime import datetime
from typing import TYPE_CHECKING
from typing import Literal

from sqlalchemy import CheckConstraint
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from ..db.keys import Key
from ..db.keys import KeyType
from ..db.resource import Entity
from ..db.resource import listing_index
from ..db.types import Timestamp

if TYPE_CHECKING:
    from ..projects.models import Project

TaskStatus = Literal["todo", "doing", "done"]
TASK_STATUSES: tuple[TaskStatus, ...] = ("todo", "doing", "done")


class Task(Entity):
    __tablename__ = "task"
    __table_args__ = (
        UniqueConstraint(
            "project_id",
            "title",
            info={"message": "this project already has a task with this title"},
        ),
        CheckConstraint(
            "priority BETWEEN 0 AND 5",
            name="priority_range",
            info={"message": "priority must be between 0 and 5"},
        ),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in TASK_STATUSES) + ")",
            name="status",
            info={"message": "status must be one of " + ", ".join(TASK_STATUSES)},
        ),
        # Serves "a project's tasks by status" and, as its leading column, every lookup
        # and cascade by project_id: a separate index on the foreign key would be redundant.
        Index(None, "project_id", "status"),
        # A project's tasks in the order they were made.
        listing_index("task", "project_id", "created_at"),
    )

    project_id: Mapped[Key] = mapped_column(
        KeyType,
        ForeignKey(
            "project.id", ondelete="CASCADE", info={"message": "the project does not exist"}
        ),
    )
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="todo", server_default="todo")
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(Timestamp)

    # A single parent: joinedload it when needed; never loaded behind your back.
    project: Mapped["Project"] = relationship(back_populates="tasks", lazy="raise")
