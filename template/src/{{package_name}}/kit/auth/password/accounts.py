"""The operations on the service's own users: register, log in, refresh, log out, revoke.

A login ends in a `LoginSession` (a family of refresh tokens) and a token pair. A
refresh token is good for one use: using it marks it used and gives a new one of the
same family, in one conditional UPDATE, so of two requests racing with the same token
exactly one wins. A token used a second time means two parties hold it (a thief and
its owner, or a lost race): the family is revoked, so whoever holds a token of it
must log in again.
"""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy import update

from ...db.session import WriteSession
from ...db.session import unit_of_work
from ...db.types import utc_now
from ...errors import Conflict
from ...errors import InvalidData
from ...repository.repository import BaseRepository
from ...settings import Settings
from .hashing import Passwords
from .models import LoginSession
from .models import RefreshToken
from .models import User
from .throttle import Throttle
from .tokens import AccessTokens
from .tokens import new_refresh_token
from .tokens import refresh_digest


def normal_email(email: str) -> str:
    """The form an email is stored and looked up in: one account per address, whatever
    the case it is typed in."""
    return email.strip().lower()


class InvalidCredentials(Exception):
    """A login or refresh that fails: one answer, whatever the reason."""


class Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many login attempts; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


class Users(BaseRepository[User]):
    model = User


class Accounts:
    """Holds no state of a request: one instance serves the service, each method takes
    the session it works in."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.passwords = Passwords(settings)
        self.tokens = AccessTokens(settings)
        self.throttle = Throttle.from_settings(settings)
        self.refresh_lifetime = timedelta(seconds=settings.password_refresh_token_seconds)

    def check_password(self, email: str, password: str) -> None:
        """The password rules (PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH, not the email)."""
        low, high = self.settings.password_min_length, self.settings.password_max_length
        if not low <= len(password) <= high:
            raise InvalidData(f"the password must have {low} to {high} characters")
        if password.strip().lower() in (email, email.split("@")[0]):
            raise InvalidData("the password must not be the email")

    async def register(
        self,
        session: WriteSession,
        email: str,
        password: str,
        permissions: frozenset[str] = frozenset(),
        *,
        address: str | None = None,
    ) -> User:
        """A new user; from a client `address` (the route's), counted by the throttle as
        an attempt of that address, since each costs a hash (`Throttled` past it)."""
        email = normal_email(email)
        self.check_password(email, password)
        if address is not None and (wait := await self._count_address(session, address)):
            raise Throttled(wait)
        hashed = await self.passwords.hash(password)
        return await self._add(
            session, email, hashed, permissions or self.settings.password_permissions
        )

    @unit_of_work
    async def _count_address(self, session: WriteSession, address: str) -> int:
        return await self.throttle.attempt(session, None, address, utc_now())

    @unit_of_work
    async def _add(
        self, session: WriteSession, email: str, hashed: str, permissions: frozenset[str]
    ) -> User:
        users = Users(session)
        if await users.exists(email=email):
            raise Conflict("an account with this email exists")
        return await users.create(
            email=email, password_hash=hashed, permissions=" ".join(sorted(permissions))
        )

    async def login(
        self, session: WriteSession, email: str, password: str, address: str
    ) -> TokenPair:
        """Tokens for a user whose password matches; `Throttled` past the limits,
        `InvalidCredentials` otherwise, with the same work done for an unknown email."""
        email = normal_email(email)
        wait, user = await self._attempt(session, email, address)
        if wait:
            raise Throttled(wait)
        valid, rehashed = await self.passwords.verify(
            password, user.password_hash if user else None
        )
        if user is None or not valid or not user.active:
            raise InvalidCredentials
        return await self._start(session, user, email, rehashed)

    @unit_of_work
    async def _attempt(
        self, session: WriteSession, email: str, address: str
    ) -> tuple[int, User | None]:
        wait = await self.throttle.attempt(session, email, address, utc_now())
        return wait, None if wait else await Users(session).get_by(email=email)

    @unit_of_work
    async def _start(
        self, session: WriteSession, user: User, email: str, rehashed: str | None
    ) -> TokenPair:
        if rehashed is not None:  # the hash's cost changed in the settings since
            await session.execute(
                update(User)
                .where(User.id == user.id)
                .values(password_hash=rehashed)
                .execution_options(synchronize_session=False)
            )
        await self.throttle.clear_account(session, email)
        login = LoginSession(user_id=user.id)
        session.add(login)
        await session.flush()
        return await self._pair(session, user.id, login.id)

    async def _pair(
        self, session: WriteSession, user_id: uuid.UUID, session_id: uuid.UUID
    ) -> TokenPair:
        token, digest = new_refresh_token()
        session.add(
            RefreshToken(
                session_id=session_id,
                token_hash=digest,
                expires_at=utc_now() + self.refresh_lifetime,
            )
        )
        await session.flush()
        access = self.tokens.issue(user_id, session_id)
        return TokenPair(access, token, self.tokens.lifetime)

    async def refresh(self, session: WriteSession, token: str) -> TokenPair:
        """A new pair for a refresh token used for the first time; `InvalidCredentials`
        for any other, and the family revoked when it was used before."""
        outcome = await self._rotate(session, refresh_digest(token))
        if outcome is None:
            raise InvalidCredentials
        return outcome

    @unit_of_work
    async def _rotate(self, session: WriteSession, digest: str) -> TokenPair | None:
        found = (
            select(
                RefreshToken.id,
                RefreshToken.used_at,
                RefreshToken.expires_at,
                LoginSession.id,
                LoginSession.revoked_at,
                User.id,
                User.active,
            )
            .join(LoginSession, RefreshToken.session_id == LoginSession.id)
            .join(User, LoginSession.user_id == User.id)
            .where(RefreshToken.token_hash == digest)
        )
        row = (await session.execute(found)).one_or_none()
        if row is None:
            return None
        token_id, used_at, expires_at, session_id, revoked_at, user_id, active = row
        now = utc_now()
        if revoked_at is not None or not active or expires_at <= now:
            return None
        if used_at is None:
            used = await session.execute(
                update(RefreshToken)
                .where(RefreshToken.id == token_id, RefreshToken.used_at.is_(None))
                .values(used_at=now)
                .execution_options(synchronize_session=False)
            )
            if used.rowcount == 1:  # type: ignore[attr-defined]
                return await self._pair(session, user_id, session_id)
        # Used before, or by a request that won the race just now: the family ends.
        await self._revoke(session, LoginSession.id == session_id)
        return None

    async def logout(self, session: WriteSession, token: str) -> None:
        """End the login the refresh token belongs to (nothing if it is unknown)."""
        await self._logout(session, refresh_digest(token))

    @unit_of_work
    async def _logout(self, session: WriteSession, digest: str) -> None:
        family = select(RefreshToken.session_id).where(RefreshToken.token_hash == digest)
        await self._revoke(session, LoginSession.id.in_(family.scalar_subquery()))

    @unit_of_work
    async def revoke_sessions(self, session: WriteSession, user_id: uuid.UUID) -> None:
        """End every login of the user: their refresh and access tokens stop working."""
        await self._revoke(session, LoginSession.user_id == user_id)

    @unit_of_work
    async def set_active(self, session: WriteSession, user_id: uuid.UUID, active: bool) -> None:
        """Disable (or enable again) a user: a disabled one's tokens stop working at once."""
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(active=active)
            .execution_options(synchronize_session=False)
        )

    @unit_of_work
    async def set_permissions(
        self, session: WriteSession, user_id: uuid.UUID, permissions: frozenset[str]
    ) -> None:
        """Replace the user's permissions: they hold at the user's next request."""
        await session.execute(
            update(User)
            .where(User.id == user_id)
            .values(permissions=" ".join(sorted(permissions)))
            .execution_options(synchronize_session=False)
        )

    async def _revoke(self, session: WriteSession, which: object) -> None:
        await session.execute(
            update(LoginSession)
            .where(which, LoginSession.revoked_at.is_(None))  # type: ignore[arg-type]
            .values(revoked_at=utc_now())
            .execution_options(synchronize_session=False)
        )
