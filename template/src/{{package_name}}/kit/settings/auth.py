"""Authentication's settings (`kit/auth/`): which way callers prove who they are, and for
OpenID Connect, the provider the service trusts and how its tokens become permissions.

AUTH=none (the default) turns authentication off: every caller is the anonymous
principal and holds every permission, as a service without auth behaves.
"""

import json
from typing import Annotated
from typing import Any
from typing import Literal

from pydantic import BeforeValidator
from pydantic import Field
from pydantic import model_validator
from pydantic_settings import BaseSettings
from pydantic_settings import NoDecode

# The ways of authenticating the kit has; each adds its module under kit/auth/.
AuthMode = Literal["none", "oidc", "password"]
# Signature algorithms a provider's tokens may use: asymmetric only, so that the keys the
# service fetches can verify but never sign (an HMAC "signed with the public key" is
# refused by name, RFC 8725 section 2.1), and never `none`.
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


def _split(value: Any) -> Any:
    """`a, b` or `a b` as the environment holds it; a list as code passes it."""
    if isinstance(value, str):
        return [item for item in value.replace(",", " ").split() if item]
    return value


def _mapping(value: Any) -> Any:
    """A JSON object as the environment holds it; a dict as code passes it."""
    if isinstance(value, str):
        return json.loads(value) if value.strip() else {}
    return value


Words = Annotated[list[str], NoDecode, BeforeValidator(_split)]
PermissionMap = Annotated[dict[str, list[str]], NoDecode, BeforeValidator(_mapping)]


class AuthSettings(BaseSettings):
    """The authentication part of `KitSettings`; the comment says when to change each."""

    # none: no authentication (every caller may do everything); oidc: bearer tokens
    # (JWTs) from the OpenID provider OIDC_ISSUER names, checked against its keys;
    # password: the service's own users and tokens (kit/auth/password/, PASSWORD_*).
    auth: AuthMode = "none"
    # The provider's issuer URL, exactly as its tokens' `iss` and its discovery document
    # (`<issuer>/.well-known/openid-configuration`) spell it. Production needs https.
    oidc_issuer: str = ""
    # The audience the provider puts in tokens meant for this service (`aud`): the API's
    # identifier there (a resource indicator, an Auth0 API identifier, a client id).
    oidc_audience: str = ""
    # Signature algorithms accepted, comma-separated: asymmetric ones only. A token in
    # another, or in one its key is not for, is refused.
    oidc_algorithms: Words = Field(default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"])
    # Seconds of clock difference tolerated on `exp`, `nbf` and `iat`.
    auth_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # The claims whose values grant permissions, first found wins: a space-separated
    # `scope`/`scp` string or a list (`permissions`, `roles`). Each value is a permission
    # by its own name, or the permissions OIDC_PERMISSION_MAP gives it.
    oidc_permission_claims: Words = Field(
        default_factory=lambda: ["scope", "scp", "permissions", "roles"]
    )
    # Roles or scopes standing for several permissions, as JSON:
    # {"editor": ["projects:read", "projects:write"]}. A value not named here is a
    # permission of the same name.
    oidc_permission_map: PermissionMap = Field(default_factory=dict)
    # Seconds between two fetches of the provider's keys when a token names a key the
    # service does not know: tokens with made-up key ids cannot make it hammer the
    # provider. A key the provider rotated in is accepted after one such fetch.
    oidc_jwks_min_refresh_seconds: float = Field(default=60.0, ge=0, le=3600)
    # Seconds the keys are kept before they are fetched again on the next token. A
    # provider unreachable then leaves the known keys in use: they keep working.
    oidc_jwks_max_age_seconds: float = Field(default=3600.0, ge=1, le=86_400)
    # Seconds one request to the provider (discovery, keys) may take.
    oidc_http_timeout: float = Field(default=5.0, gt=0, le=60)

    def missing_for_auth(self) -> str | None:
        """What AUTH needs and is not set, checked as the service starts (the app can be
        imported without it: its tests run with their own callers)."""
        if self.auth == "oidc" and not (self.oidc_issuer and self.oidc_audience):
            return (
                "AUTH=oidc needs OIDC_ISSUER (the provider's issuer URL) and OIDC_AUDIENCE "
                "(this API's identifier at the provider)"
            )
        return None

    @model_validator(mode="after")
    def _only_asymmetric_signatures(self) -> "AuthSettings":
        refused = sorted(set(self.oidc_algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused:
            raise ValueError(
                f"OIDC_ALGORITHMS: {', '.join(refused)} not accepted; only asymmetric "
                f"signatures are: {', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
            )
        if self.oidc_issuer and not self.oidc_issuer.startswith(("https://", "http://")):
            raise ValueError("OIDC_ISSUER must be an http(s) URL")
        if self.auth == "oidc" and not self.oidc_algorithms:
            raise ValueError("OIDC_ALGORITHMS: name at least one algorithm")
        return self
