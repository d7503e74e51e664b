import uuid
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Literal

from sqlalchemy import CheckConstraint
from sqlalchemy import DateTime
from sqlalchemy import ForeignKey
from sqlalchemy import Index
from sqlalchemy import String
from sqlalchemy import UniqueConstraint
from sqlalchemy import text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from ..db.base import Base
from ..db.mixins import SoftDeleteMixin
from ..db.mixins import TimestampMixin
from ..db.mixins import UUIDPrimaryKeyMixin
from ..db.mixins import VersionedMixin

if TYPE_CHECKING:
    from ..projects.models import Project

TaskStatus = Literal["todo", "doing", "done"]
TASK_STATUSES: tuple[TaskStatus, ...] = ("todo", "doing", "done")


class Task(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, VersionedMixin, Base):
    __tablename__ = "task"
    __table_args__ = (
        UniqueConstraint("project_id", "title"),
        CheckConstraint("priority BETWEEN 0 AND 5", name="priority_range"),
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in TASK_STATUSES) + ")",
            name="status",
        ),
        # Serves "a project's tasks by status" and, as its leading column, every lookup
        # and cascade by project_id: a separate index on the foreign key would be redundant.
        Index(None, "project_id", "status"),
        # Listing a project's live tasks in order skips deleted rows without storing them.
        Index(
            "ix_task_live_project_id_created_at",
            "project_id",
            "created_at",
            postgresql_where=text("deleted_at IS NULL"),
        ),
    )

    project_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("project.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="todo", server_default="todo")
    priority: Mapped[int] = mapped_column(default=0, server_default="0")
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    # A single parent: joinedload it when needed; never loaded behind your back.
    project: Mapped["Project"] = relationship(back_populates="tasks", lazy="raise")
