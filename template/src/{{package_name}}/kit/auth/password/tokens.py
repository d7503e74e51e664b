"""The tokens a login gives: a short-lived access token (a JWT signed with HS256 by
PASSWORD_SIGNING_KEY) and an opaque refresh token, stored only as its SHA-256.

An access token names the user (`sub`) and the login it belongs to (`sid`), so that
revoking the login or disabling the user ends it at once (`authenticator.py`).
"""

import hashlib
import logging
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import OctKey
from joserfc.jwt import JWTClaimsRegistry

from ...settings import Settings
from ...settings import SettingsError
from ...settings.password import weak_key_message
from ..principal import Unauthenticated

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
# The key outside production when none is set: known to everyone, refused in production.
DEVELOPMENT_KEY = "dev-only-password-signing-key-never-in-production"
# Bytes of randomness in a refresh token.
REFRESH_TOKEN_BYTES = 32
# Longest text taken as a token: anything longer is refused before it is parsed.
MAX_TOKEN_LENGTH = 4096


def signing_key(settings: Settings) -> bytes:
    """PASSWORD_SIGNING_KEY, or the development key outside production (start-up stops
    in production without one; a weak one the settings refused already)."""
    if settings.password_signing_key is not None:
        return settings.password_signing_key.get_secret_value().encode()
    if settings.environment == "production":
        raise SettingsError(weak_key_message())
    log.warning("PASSWORD_SIGNING_KEY is not set: access tokens are signed with a public key")
    return DEVELOPMENT_KEY.encode()


def new_refresh_token() -> tuple[str, str]:
    """A refresh token and the digest the database keeps of it."""
    token = secrets.token_urlsafe(REFRESH_TOKEN_BYTES)
    return token, refresh_digest(token)


def refresh_digest(token: str) -> str:
    # A plain digest suffices: the token is random, there is nothing to guess.
    return hashlib.sha256(token.encode()).hexdigest()


class AccessTokens:
    """Issues and checks the service's access tokens; `issuer` is both their `iss` and
    their `aud`, so a token of another service with the same key is refused."""

    def __init__(self, settings: Settings) -> None:
        self._key = OctKey.import_key(signing_key(settings))
        self.issuer = settings.service_name
        self.lifetime = settings.password_access_token_seconds
        self._claims = JWTClaimsRegistry(
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.issuer},
            sub={"essential": True},
            sid={"essential": True},
            exp={"essential": True},
        )

    def issue(self, user_id: uuid.UUID, session_id: uuid.UUID) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.issuer,
            "sub": str(user_id),
            "sid": str(session_id),
            "iat": now,
            "exp": now + self.lifetime,
        }
        return jwt.encode({"alg": ALGORITHM}, claims, self._key, algorithms=[ALGORITHM])

    def verify(self, token: str) -> Mapping[str, Any]:
        """The token's claims, or `Unauthenticated`: whatever the text, nothing else."""
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated("the access token is too long")
        try:
            decoded = jwt.decode(token, self._key, algorithms=[ALGORITHM])
            self._claims.validate(decoded.claims)
        except JoseError as error:
            raise Unauthenticated(f"the access token is not valid ({error.error})") from None
        except (ValueError, TypeError, UnicodeError):
            raise Unauthenticated("the access token is malformed") from None
        return decoded.claims
