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

from ..entity import Entity
from ..entity import Key
from ..entity import KeyType
from ..kit.db.types import Timestamp
from ..kit.repository.resource import listing_index

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
        # A project's tasks in the order they were made, last changed or by priority: each
        # column the repository lets a listing sort by, after the project it is listed in.
        listing_index("task", "project_id", "created_at"),
        listing_index("task", "project_id", "updated_at", "id"),
        listing_index("task", "project_id", "priority", "id"),
        {"comment": "A task of a project; deleted with its project."},
    )

    project_id: Mapped[Key] = mapped_column(
        KeyType,
        ForeignKey(
            "project.id", ondelete="CASCADE", info={"message": "the project does not exist"}
        ),
        comment="The task's project.",
    )
    title: Mapped[str] = mapped_column(
        String(200), comment="What is to be done: unique within its project."
    )
    status: Mapped[str] = mapped_column(
        String(10),
        default="todo",
        server_default="todo",
        comment="Where the task stands: todo, doing or done.",
    )
    priority: Mapped[int] = mapped_column(
        default=0, server_default="0", comment="A number from 0 to 5 that listings can sort by."
    )
    due_at: Mapped[datetime | None] = mapped_column(
        Timestamp, comment="When the task should be done (UTC); none if it has no deadline."
    )

    # A single parent: joinedload it when needed; never loaded behind your back.
    project: Mapped["Project"] = relationship(back_populates="tasks", lazy="raise")
