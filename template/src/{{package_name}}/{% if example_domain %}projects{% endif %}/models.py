from typing import TYPE_CHECKING

from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy import UniqueConstraint
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column
from sqlalchemy.orm import relationship

from ..entity import Entity
from ..kit.repository.resource import listing_index

if TYPE_CHECKING:
    from ..tasks.models import Task


class Project(Entity):
    __tablename__ = "project"
    __table_args__ = (
        # Unique among all rows, so a slug names one project for good.
        UniqueConstraint("slug", info={"message": "a project with this slug already exists"}),
        # A listing pages through projects by one sort column the repository allows, then
        # the id: keyset cursors seek in the column's index, offset pages walk it in order.
        listing_index("project", "created_at", "id"),
        listing_index("project", "updated_at", "id"),
        listing_index("project", "name", "id"),
        {"comment": "A project: a named, slugged container of tasks."},
    )

    name: Mapped[str] = mapped_column(String(200), comment="What people call the project.")
    slug: Mapped[str] = mapped_column(
        String(100), comment="The project's name in URLs: unique among all projects, for good."
    )
    description: Mapped[str] = mapped_column(
        Text,
        default="",
        comment="Free text about the project; empty if none.",
    )
    owner: Mapped[str | None] = mapped_column(
        String(255),
        comment="Who created the project (the caller's subject), who alone may change or "
        "delete it; null: nobody's (made without authentication).",
    )

    # lazy="raise": a forgotten eager load fails in tests, not as MissingGreenlet in production.
    tasks: Mapped[list["Task"]] = relationship(
        back_populates="project",
        lazy="raise",
        passive_deletes=True,
        order_by="Task.created_at",
    )
