"""The settings of the service's own users (`kit/auth/password/`): the key that signs
access tokens, the password rules, the tokens' lifetimes, the login throttle and the
cost of the password hash.

Idle until the service includes `password_router` (the `password` extra). Production
refuses a signing key that is short or a placeholder, in one line, as the settings load;
an unset key there stops start-up when the router or the authenticator is built.
"""

from typing import Any

from pydantic import Field
from pydantic import SecretStr
from pydantic import model_validator
from pydantic_settings import BaseSettings

# Where the password routes are (`password_router`), and so the token URL the OpenAPI
# document's login form posts to.
PASSWORD_ROUTES = "/auth"  # noqa: S105 - a path, not a secret
PASSWORD_TOKEN_URL = f"{PASSWORD_ROUTES}/token"
# HMAC-SHA256's key size: a shorter key is weaker than the signature it makes.
MIN_SIGNING_KEY_BYTES = 32
# The placeholders this project's files ship, as for CURSOR_SECRET.
_PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "dev-only", "placeholder")


def weak_signing_key(key: SecretStr | None) -> bool:
    """Unset, shorter than MIN_SIGNING_KEY_BYTES, or one of the shipped placeholders."""
    if key is None:
        return True
    value = key.get_secret_value()
    lowered = value.lower()
    return len(value.encode()) < MIN_SIGNING_KEY_BYTES or any(
        mark in lowered for mark in _PLACEHOLDER_MARKS
    )


def weak_key_message() -> str:
    return (
        f"PASSWORD_SIGNING_KEY must be set in production to a random value of at least "
        f"{MIN_SIGNING_KEY_BYTES} bytes, not a placeholder (make one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )


class PasswordSettings(BaseSettings):
    """The password part of `KitSettings`; the comment says when to change each."""

    # Signs the access tokens (HS256). Unset outside production: a development key, so
    # that tokens survive a restart. Changing it logs every caller out of their access
    # tokens (refresh tokens stay valid: they are stored, not signed).
    password_signing_key: SecretStr | None = None
    # Shortest and longest password accepted at registration. The longest bounds the
    # work one request can ask of the hash.
    password_min_length: int = Field(default=12, ge=8, le=128)
    password_max_length: int = Field(default=128, ge=16, le=1024)
    # Seconds an access token is valid: a revoked session or a disabled user is refused
    # at once (the authenticator reads the database), so this bounds only a stolen token
    # used against another service that trusts it without asking.
    password_access_token_seconds: int = Field(default=900, ge=30, le=86_400)
    # Seconds a login lasts without its owner coming back: each refresh rotates the
    # refresh token, and the family dies this long after its last use.
    password_refresh_token_seconds: int = Field(default=1_209_600, ge=300, le=31_536_000)
    # Login attempts one account may take, and one client address, per window; the next
    # gets a 429 with Retry-After until the window ends. A successful login clears the
    # account's count (not the address's).
    password_attempts_per_account: int = Field(default=5, ge=1, le=1000)
    password_attempts_per_address: int = Field(default=50, ge=1, le=100_000)
    password_throttle_seconds: int = Field(default=900, ge=1, le=86_400)
    # Who may register: anyone (on), or nobody through the API (off; the service creates
    # users itself with `Accounts.register`).
    password_registration_open: bool = True
    # Permissions a new user is given, comma-separated in the environment
    # ("projects:read,projects:write").
    password_default_permissions: str = ""
    # Argon2id's cost: passes over memory, memory in KiB, lanes. Raise them as hardware
    # allows (each login costs this much CPU and memory); a stored hash made with other
    # values is made again at the user's next login.
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65_536, ge=8, le=4_194_304)
    password_hash_parallelism: int = Field(default=4, ge=1, le=64)

    @property
    def password_permissions(self) -> frozenset[str]:
        return frozenset(
            p.strip() for p in self.password_default_permissions.split(",") if p.strip()
        )

    @model_validator(mode="after")
    def _production_needs_a_strong_key(self) -> Any:
        production = getattr(self, "environment", None) == "production"
        key = self.password_signing_key
        if production and key is not None and weak_signing_key(key):
            raise ValueError(weak_key_message())
        if self.password_min_length > self.password_max_length:
            raise ValueError("PASSWORD_MIN_LENGTH is larger than PASSWORD_MAX_LENGTH")
        if self.password_hash_memory_kib < 8 * self.password_hash_parallelism:
            raise ValueError("PASSWORD_HASH_MEMORY_KIB must be at least 8 per lane")
        return self
