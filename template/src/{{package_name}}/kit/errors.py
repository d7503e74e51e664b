"""Domain errors: raised by services, mapped to HTTP in one place (`kit/http/problems.py`)."""

from collections.abc import Sequence


class DomainError(Exception):
    """Base of the errors a client can cause and be told about."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    def __init__(self, resource: str, key: object) -> None:
        super().__init__(f"{resource} {key} was not found")
        self.resource = resource


class Conflict(DomainError):
    """The request contradicts stored data (a duplicate, a missing reference)."""


class StaleVersion(Conflict):
    """The client edited a version that someone else has changed since."""

    def __init__(self, resource: str, expected: int | None = None, actual: int | None = None):
        since = f"since version {expected}" if expected is not None else "since it was read"
        now = f"; it is now at version {actual}" if actual is not None else ""
        super().__init__(f"{resource} was changed by someone else {since}{now}")
        self.expected = expected
        self.actual = actual


class InvalidData(DomainError):
    """Stored data would break a rule the database enforces (a check, a not-null)."""


class InvalidQuery(DomainError):
    """A filter, ordering or cursor the client sent cannot be used."""

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field


class DatabaseUnavailable(Exception):
    """The database cannot be reached now; the client should retry later."""

    def __init__(self, reason: str, *, retry_after: int = 5) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class DatabaseMisconfigured(Exception):
    """The database cannot be used as configured (no such database, refused credentials,
    an unknown host) or did not answer any start-up attempt: start-up stops with one
    line on what to fix."""


def join_names(names: Sequence[str]) -> str:
    return ", ".join(sorted(names))
