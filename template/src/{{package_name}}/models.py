"""Every model, imported in one place: Alembic's autogenerate and the tests read this.

A model that is not imported here is invisible to migrations; `tests/test_models.py`
checks that this registry and the metadata agree.
"""

from .db.base import Base
from .projects.models import Project
from .tasks.models import Task

metadata = Base.metadata

__all__ = ["Base", "Project", "Task", "metadata"]
