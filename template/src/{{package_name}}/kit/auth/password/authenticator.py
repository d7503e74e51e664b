"""`PasswordAuthenticator`: an access token of the service's own users → `Principal`.

The signature and the claims are checked first (no database work for a forged or
expired token); then one indexed read says whether the login is still on and the user
still active, and gives the user's permissions as they are now. So revoking a login,
disabling a user or taking a permission away holds at the next request, not when the
token expires.
"""

import uuid
from collections.abc import Callable

from sqlalchemy import select

from ...db.session import ReadSession
from ...settings import Settings
from ..principal import Principal
from ..principal import Unauthenticated
from .models import LoginSession
from .models import User
from .tokens import AccessTokens


class PasswordAuthenticator:
    """`sessions` opens the session the check reads in: the primary's
    (`db.write_session`), so that a revocation is seen at once, not after replica lag."""

    def __init__(
        self,
        settings: Settings,
        sessions: Callable[[], ReadSession],
        tokens: AccessTokens | None = None,
    ) -> None:
        self.tokens = tokens or AccessTokens(settings)
        self.sessions = sessions

    async def authenticate(self, token: str) -> Principal:
        async with self.sessions() as session:
            return await principal_in(session, self.tokens, token)


async def principal_in(session: ReadSession, tokens: AccessTokens, token: str) -> Principal:
    """The caller of `token`, read in `session` (a request's, in routes and tests)."""
    claims = tokens.verify(token)
    try:
        user_id, session_id = uuid.UUID(str(claims["sub"])), uuid.UUID(str(claims["sid"]))
    except ValueError:
        raise Unauthenticated("the access token names no user") from None
    found = (
        select(User.active, User.email, User.permissions, LoginSession.revoked_at)
        .join(LoginSession, LoginSession.user_id == User.id)
        .where(User.id == user_id, LoginSession.id == session_id)
    )
    row = (await session.execute(found)).one_or_none()
    if row is None or row.revoked_at is not None:
        raise Unauthenticated("the login has ended")
    if not row.active:
        raise Unauthenticated("the user is disabled")
    # The claims the token carries, and the user's email as it is now.
    return Principal(
        str(user_id), frozenset(row.permissions.split()), {**claims, "email": row.email}
    )
