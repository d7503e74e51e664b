"""The callers of a booted service: none needed without auth, a real provider's with it.

`callers(answers)` starts the test OpenID provider (tests/oidc/) for a variant made with
`auth=oidc`, and gives what the service's start needs (OIDC_ISSUER, OIDC_AUDIENCE) and
the header its requests carry: a token of the provider's `writer` client, which holds
every permission of the example domain and owns what it creates. With `auth=password`
the caller is a user of the service's own, registered and logged in once the service
answers (`at(base)`), with the example domain's permissions. Without auth it gives
nothing, and the service answers as it always has.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from ..oidc.provider import AUDIENCE, Provider, running

# What a password variant's users may do (PASSWORD_DEFAULT_PERMISSIONS): the example
# domain's every permission.
PASSWORD_PERMISSIONS = "projects:read,projects:write"


@dataclass
class Callers:
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    provider: Provider | None = None
    # auth=password: the user's email, logged in by `at` once the service answers.
    user: str | None = None

    def at(self, base: str) -> dict[str, str]:
        """The headers of requests to the service at `base` (a password variant's user
        registers and logs in at the first call)."""
        if self.user is not None and not self.headers:
            password = "boot-test-password-1"
            with httpx.Client(base_url=base, timeout=30) as http:
                body = {"email": self.user, "password": password}
                http.post("/auth/register", json=body).raise_for_status()
                form = {"username": self.user, "password": password}
                token = http.post("/auth/token", data=form).raise_for_status().json()
            self.headers["Authorization"] = f"Bearer {token['access_token']}"
        return self.headers

    def bearer(self, client: str) -> dict[str, str]:
        """The header of another of the provider's clients (tests/oidc/provider.mjs)."""
        assert self.provider is not None, "a variant without auth has no callers"
        return {"Authorization": f"Bearer {self.provider.token(client)}"}


@contextmanager
def callers(answers: dict[str, Any]) -> Iterator[Callers]:
    if answers.get("auth", "none") == "none":
        yield Callers()
        return
    if answers["auth"] == "password":
        yield Callers(
            {"PASSWORD_DEFAULT_PERMISSIONS": PASSWORD_PERMISSIONS}, user="writer@example.com"
        )
        return
    with running() as provider:
        env = {"OIDC_ISSUER": provider.issuer, "OIDC_AUDIENCE": AUDIENCE}
        writer = {"Authorization": f"Bearer {provider.token('writer')}"}
        yield Callers(env, writer, provider)
