"""The template's machinery: the service's code builds on it and does not have to read it.

What a resource needs, in one import (`from <pkg>.kit import Repository, ...`); its
model's base and key come from the service's own `entity.py`:

- `Repository`, `Service`: a model's data access and its operations (`repository/`).
- `unit_of_work`: marks a service method that writes; the one place that commits.
- `ReadSession`, `WriteSession`: the session a route takes (FastAPI opens it for the
  request and closes it before the response) and the one a service method is given.
  Reads take a `ReadSession`; writes a `WriteSession`, which mypy refuses on a read path.
- `OffsetPage`, `CursorPage`: a listing's response, a page of items by number or cursor.
- `error_responses`: the problem responses a route documents, by status.

Everything else stays in its sub-package: `kit.http.pagination` (a listing's query
parameters), `kit.http.schemas` (field types), `kit.cache.entries` (`Cached`),
`kit.repository.resource` (`listing_index`), `kit.db.session` (the session classes).
"""

from .db.session import unit_of_work
from .http.dependencies import ReadSessionDep as ReadSession
from .http.dependencies import WriteSessionDep as WriteSession
from .http.pagination import CursorPage
from .http.pagination import OffsetPage
from .http.problems import error_responses
from .repository.resource import Repository
from .repository.resource import Service

__all__ = [
    "CursorPage",
    "OffsetPage",
    "ReadSession",
    "Repository",
    "Service",
    "WriteSession",
    "error_responses",
    "unit_of_work",
]
