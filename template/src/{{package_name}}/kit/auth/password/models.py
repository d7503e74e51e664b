"""The tables of the service's own users: who they are, their logins and the throttle.

- `auth_user`: one row a user; the email is stored lowercased, so the unique index
  holds case-insensitively on every backend; the password as its Argon2id hash.
- `auth_session`: one row a login (a refresh token family); revoking it ends every
  refresh token of the family and every access token issued under it.
- `auth_refresh_token`: the refresh tokens, by their SHA-256 (a database leak gives no
  usable token); each is used once, and a second use revokes its family.
- `auth_throttle`: login attempts per account and per client address in the current
  window, shared by every worker and pod.

The migration of the `password` answer creates them; importing this module declares
them to the service's metadata (autogenerate then sees them).
"""

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey
from sqlalchemy import String
from sqlalchemy import Text
from sqlalchemy.orm import Mapped
from sqlalchemy.orm import mapped_column

from ...db.base import Base
from ...db.keys import UUID_KEY_TYPE
from ...db.keys import UUIDKey
from ...db.mixins import TimestampMixin
from ...db.types import Timestamp
from ...db.types import inserted_at

# The longest address RFC 5321 lets a mailbox have.
EMAIL_LENGTH = 254


class User(UUIDKey, TimestampMixin, Base):
    __tablename__ = "auth_user"

    # Lowercased (`normal_email`): one account per address, whatever its case.
    email: Mapped[str] = mapped_column(String(EMAIL_LENGTH), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # A disabled user cannot log in, refresh, or use an access token already issued.
    active: Mapped[bool] = mapped_column(default=True)
    # The permissions routes require ("projects:read"), separated by spaces.
    permissions: Mapped[str] = mapped_column(Text, default="")


class LoginSession(UUIDKey, Base):
    __tablename__ = "auth_session"

    user_id: Mapped[uuid.UUID] = mapped_column(
        UUID_KEY_TYPE, ForeignKey("auth_user.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(Timestamp, **inserted_at())
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)


class RefreshToken(UUIDKey, Base):
    __tablename__ = "auth_refresh_token"

    session_id: Mapped[uuid.UUID] = mapped_column(
        UUID_KEY_TYPE, ForeignKey("auth_session.id", ondelete="CASCADE"), index=True
    )
    # SHA-256 of the token, hexadecimal: the token itself is never stored.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)


class LoginThrottle(Base):
    __tablename__ = "auth_throttle"

    # "account:" and the SHA-256 of the email (guessed addresses are not kept in clear),
    # or "address:" and the client's IP address.
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    # Declared before `window_start`: UPDATE sets columns in this order, and MariaDB
    # reads an earlier assignment's new value in a later one (throttle.py).
    attempts: Mapped[int]
    window_start: Mapped[datetime] = mapped_column(Timestamp)
