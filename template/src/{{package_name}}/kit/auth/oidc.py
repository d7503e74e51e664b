"""The service as an OAuth resource server: bearer JWTs from one OpenID provider.

A token is accepted when, in this order:
- it is a compact JWS (three parts) of at most `MAX_TOKEN_BYTES`, whose header names an
  algorithm of OIDC_ALGORITHMS (asymmetric only: never `none`, never an HMAC that
  would take the provider's public key as its secret);
- the provider's key set holds the key its `kid` names (`jwks.KeyCache`: cached, one
  bounded refetch for an unknown id), of the type that algorithm needs, and the
  signature verifies with it;
- `iss` is OIDC_ISSUER, `aud` holds OIDC_AUDIENCE, `exp` is in the future and `nbf`
  and `iat` are not, each within AUTH_LEEWAY_SECONDS; `sub` names the caller.

Anything else is `Unauthenticated` (401), never an exception of the JOSE library, so no
token a client makes up ends as a 500. The provider being unreachable when a token
needs keys the service does not hold is `ProviderUnavailable` (503).
"""

import json
import logging
from collections.abc import Iterable
from collections.abc import Mapping
from typing import Any

import httpx
from joserfc import jws
from joserfc import jwt
from joserfc.errors import ExpiredTokenError
from joserfc.errors import InvalidClaimError
from joserfc.errors import JoseError
from joserfc.errors import MissingClaimError

from ..settings import Settings
from .jwks import NO_KID
from .jwks import Key
from .jwks import KeyCache
from .principal import Principal
from .principal import Unauthenticated

log = logging.getLogger(__name__)

# Larger tokens are refused unread: a real access token is a few kilobytes.
MAX_TOKEN_BYTES = 16_384
# Largest discovery document or key set read from the provider.
MAX_DOCUMENT_BYTES = 1_048_576
# The key type each algorithm family verifies with.
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class OidcAuthenticator:
    """`Authenticator` for tokens of the provider OIDC_ISSUER names (kit/auth/principal.py)."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient | None = None) -> None:
        self.issuer = settings.oidc_issuer
        self.audience = settings.oidc_audience
        self.algorithms = frozenset(settings.oidc_algorithms)
        self.leeway = settings.auth_leeway_seconds
        self.permission_claims = tuple(settings.oidc_permission_claims)
        self.permission_map = {k: tuple(v) for k, v in settings.oidc_permission_map.items()}
        self._client = client or httpx.AsyncClient(
            timeout=settings.oidc_http_timeout, follow_redirects=False
        )
        self._jwks_uri: str | None = None
        self.keys = KeyCache(
            self._fetch_keys,
            min_refresh=settings.oidc_jwks_min_refresh_seconds,
            max_age=settings.oidc_jwks_max_age_seconds,
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def authenticate(self, token: str) -> Principal:
        header = _header(token)
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self.algorithms:
            raise Unauthenticated("the token's signature algorithm is not accepted")
        kid = header.get("kid", NO_KID)
        if not isinstance(kid, str):
            raise Unauthenticated("the token's key id is not a string")
        key = await self.keys.key(kid)
        if key is None:
            raise Unauthenticated("the token is signed with a key the issuer does not have")
        claims = self._verified(token, key, algorithm)
        self._check_claims(claims)
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("the token names no subject")
        return Principal(subject, self.permissions(claims), claims)

    def permissions(self, claims: Mapping[str, Any]) -> frozenset[str]:
        """What the first of OIDC_PERMISSION_CLAIMS the token carries grants."""
        for name in self.permission_claims:
            if name in claims:
                values = _words(claims[name])
                granted: set[str] = set()
                for value in values:
                    granted.update(self.permission_map.get(value, (value,)))
                return frozenset(granted)
        return frozenset()

    def _verified(self, token: str, key: Key, algorithm: str) -> dict[str, Any]:
        declared = key.alg  # a JWK may bind its key to one algorithm
        if declared is not None and declared != algorithm:
            raise Unauthenticated("the token's algorithm is not its key's")
        if _KEY_TYPES.get(algorithm[:2]) != key.key_type:
            raise Unauthenticated("the token's algorithm does not fit its key")
        try:
            return dict(jwt.decode(token, key, algorithms=[algorithm]).claims)
        except (JoseError, ValueError, TypeError):
            raise Unauthenticated("the token's signature does not verify") from None

    def _check_claims(self, claims: dict[str, Any]) -> None:
        registry = jwt.JWTClaimsRegistry(
            leeway=self.leeway,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": self.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        try:
            registry.validate(claims)
        except ExpiredTokenError:
            raise Unauthenticated("the token has expired") from None
        except MissingClaimError as error:
            raise Unauthenticated(f"the token lacks a claim: {error.description}") from None
        except InvalidClaimError as error:
            raise Unauthenticated(f"the token's claim is not accepted: {error.claim}") from None
        except (JoseError, ValueError, TypeError, OverflowError):
            raise Unauthenticated("the token's claims are not valid") from None

    async def _fetch_keys(self) -> Any:
        if self._jwks_uri is None:
            discovery = await self._get(
                self.issuer.rstrip("/") + "/.well-known/openid-configuration"
            )
            # OpenID Connect Discovery 1.0, 4.3: the document must name the issuer asked.
            if not isinstance(discovery, dict) or discovery.get("issuer") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            uri = discovery.get("jwks_uri")
            if not isinstance(uri, str) or not uri.startswith(("https://", "http://")):
                raise ValueError("the discovery document has no jwks_uri")
            self._jwks_uri = uri
        return await self._get(self._jwks_uri)

    async def _get(self, url: str) -> Any:
        response = await self._client.get(url, headers={"Accept": "application/json"})
        response.raise_for_status()
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
        return json.loads(response.content)


def _header(token: str) -> dict[str, Any]:
    """The protected header of a compact JWS, unverified: what to verify it with."""
    if len(token) > MAX_TOKEN_BYTES:
        raise Unauthenticated("the token is too long")
    if token.count(".") != 2:
        raise Unauthenticated("the token is not a signed JWT")
    try:
        header = jws.extract_compact(token.encode("ascii")).headers()
    except (JoseError, ValueError, TypeError, UnicodeError):
        raise Unauthenticated("the token is not a signed JWT") from None
    return dict(header)


def _words(value: Any) -> Iterable[str]:
    """A claim's values: space-separated text (`scope`) or a list of strings (`roles`)."""
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return ()
