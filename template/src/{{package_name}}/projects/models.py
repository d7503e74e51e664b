from typing import TYPE_CHECKING

from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from ..db.base import Base
from ..db.mixins import SoftDeleteMixin
from ..db.mixins import TimestampMixin
from ..db.mixins import UUIDPrimaryKeyMixin
from ..db.mixins import VersionedMixin

if TYPE_CHECKING:
    from ..tasks.models import Task


class Project(UUIDPrimaryKeyMixin, TimestampMixin, SoftDeleteMixin, VersionedMixin, Base):
    __tablename__ = "project"

    name: Mapped[str] = mapped_column(String(200))
    # Unique among all rows, deleted ones included, so a restore can never collide.
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    description: Mapped[str] = mapped_column(Text, default="", server_default="")

    # lazy="raise": a forgotten eager load fails in tests, not as MissingGreenlet in production.
    tasks: Mapped[list["Task"]] = relationship(
        back_populates="project",
        lazy="raise",
        passive_deletes=True,
        order_by="Task.created_at",
    )
