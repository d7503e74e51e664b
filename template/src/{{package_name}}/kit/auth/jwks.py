"""The provider's signing keys (its JWKS), fetched through its discovery document and
cached with bounded refreshes.

- The keys are kept `max_age` seconds; the first token after that fetches them again,
  and a provider unreachable then leaves the known keys in use.
- A token naming a key id the cache does not hold triggers one fetch (the provider
  rotated its keys), but at most one per `min_refresh` seconds: tokens with made-up key
  ids cannot make the service hammer the provider.
- Concurrent requests that need a fetch share one.
- Only asymmetric public keys are kept: a symmetric (`oct`) key in the set would let
  anyone who read the set sign tokens.
"""

import asyncio
import logging
import time
from collections.abc import Awaitable
from collections.abc import Callable
from typing import Any

from joserfc import jwk
from joserfc.errors import JoseError

from .principal import ProviderUnavailable

log = logging.getLogger(__name__)

# A key as joserfc imports it from a JWK.
Key = jwk.RSAKey | jwk.ECKey | jwk.OKPKey
# Key types a provider signs tokens with: RSA, elliptic curves, Edwards curves.
_ASYMMETRIC = {"RSA", "EC", "OKP"}
# The id a key without one is kept under; a token without a `kid` gets it, if it is alone.
NO_KID = ""


def import_keys(document: Any) -> dict[str, Key]:
    """The signing keys of a JWKS document by key id; unusable entries are left out."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("the JWKS document has no `keys` list")
    keys: dict[str, Key] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or entry.get("kty") not in _ASYMMETRIC:
            continue
        if entry.get("use", "sig") != "sig":
            continue  # an encryption key
        try:
            key = jwk.import_key(_public(entry))
        except (JoseError, ValueError, TypeError) as error:
            log.warning("JWKS: left out a key that does not import: %s", type(error).__name__)
            continue
        if isinstance(key, jwk.RSAKey | jwk.ECKey | jwk.OKPKey):
            keys[str(entry.get("kid", NO_KID))] = key
    return keys


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    """A JWK without its private members, should a provider ever publish them."""
    private = {"d", "p", "q", "dp", "dq", "qi", "oth"}
    return {name: value for name, value in entry.items() if name not in private}


class KeyCache:
    """The keys of one provider; `fetch` returns its JWKS document or raises."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Any]],
        *,
        min_refresh: float,
        max_age: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._min_refresh = min_refresh
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None  # the last fetch that succeeded
        self._attempted_at: float | None = None  # the last fetch, whatever its outcome
        self._failed = False  # the last fetch failed
        self._lock = asyncio.Lock()
        self.fetches = 0  # fetches tried, for the tests and the logs

    async def key(self, kid: str) -> Key | None:
        """The key `kid` names, fetching the set when it is old or lacks it (within the
        bounds above); None when the provider does not have it."""
        if self._stale():
            await self._refresh(required=not self._keys)
        found = self._find(kid)
        if found is None and not self._recently_tried():
            await self._refresh(required=True, unless=lambda: self._find(kid) is not None)
            found = self._find(kid)
        if found is None and self._failed:
            raise ProviderUnavailable(
                "the identity provider is unreachable", retry_after=self._retry_after()
            )
        return found

    def _find(self, kid: str) -> Key | None:
        if kid == NO_KID and len(self._keys) == 1:  # one key: a token need not name it
            return next(iter(self._keys.values()))
        return self._keys.get(kid)

    def _stale(self) -> bool:
        if self._fetched_at is None:
            return not self._recently_tried()
        return self._clock() - self._fetched_at >= self._max_age and not self._recently_tried()

    def _recently_tried(self) -> bool:
        return (
            self._attempted_at is not None
            and self._clock() - self._attempted_at < self._min_refresh
        )

    def _retry_after(self) -> int:
        waited = self._clock() - (self._attempted_at or 0.0)
        return max(1, int(self._min_refresh - waited) + 1)

    async def _refresh(self, *, required: bool, unless: Callable[[], bool] = bool) -> None:
        """Fetch the set once, whoever else is waiting for it. A failure keeps the keys
        already known; `required` (no key to go on) turns it into ProviderUnavailable."""
        async with self._lock:
            if self._recently_tried() or unless():  # another request just fetched
                return
            self._attempted_at = self._clock()
            self.fetches += 1
            try:
                keys = import_keys(await self._fetch())
            except Exception as error:  # any failure of the provider or of its answer
                self._failed = True
                log.warning("could not fetch the identity provider's keys: %s", error)
                if required and not self._keys:
                    raise ProviderUnavailable(
                        "the identity provider is unreachable", retry_after=self._retry_after()
                    ) from None
                return
            self._failed = False
            self._keys = keys
            self._fetched_at = self._clock()
