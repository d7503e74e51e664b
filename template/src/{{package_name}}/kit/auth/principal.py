"""The caller as every route sees it, and the contract each way of authenticating meets."""

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field
from typing import Any
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `subject` is stable for the caller's lifetime (an OpenID `sub`, a user's id as
    text) and is what ownership records. `permissions` are the names routes require
    ("projects:read"); `claims` keeps what the credential said, for the service's own
    rules.
    """

    subject: str
    permissions: frozenset[str]
    claims: Mapping[str, Any] = field(default_factory=dict)

    def may(self, permission: str) -> bool:
        return permission in self.permissions

    @property
    def anonymous(self) -> bool:
        """The caller of a service without authentication (AUTH=none): `ANONYMOUS`."""
        return not self.subject


# Every caller when AUTH=none. Its empty subject is what no authenticator returns (each
# refuses a credential that names nobody); the permission dependencies let it through.
ANONYMOUS = Principal(subject="", permissions=frozenset())


class Unauthenticated(Exception):
    """The request carries no usable credential: answered 401 with `WWW-Authenticate`.

    `error` is RFC 6750's code ("invalid_request" for a malformed header,
    "invalid_token" for a token that does not verify, "" when no credential was sent);
    `reason` is a short, safe description for the client and the log.
    """

    def __init__(self, reason: str, *, error: str = "invalid_token") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error = error


class Forbidden(Exception):
    """The caller is known but lacks a permission or does not own the resource: 403.

    `permission`, when a missing permission is the reason, is named in the answer's
    `WWW-Authenticate` (RFC 6750's `insufficient_scope`).
    """

    def __init__(self, reason: str, *, permission: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.permission = permission


class ProviderUnavailable(Exception):
    """A credential could not be checked because the service that vouches for it (an
    OpenID provider's key set) is unreachable: 503 with Retry-After, since the
    credential may well be valid."""

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class Authenticator(Protocol):
    """Turns a bearer token into a `Principal`, or raises `Unauthenticated`.

    Implementations never raise anything else for a bad token: whatever a client sends
    in the header ends as a 401, not a 500.
    """

    async def authenticate(self, token: str) -> Principal: ...
