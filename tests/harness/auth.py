"""The callers of a booted service: none needed without auth, a real provider's with it.

`callers(answers)` starts the test OpenID provider (tests/oidc/) for a variant made with
`auth=oidc`, and gives what the service's start needs (OIDC_ISSUER, OIDC_AUDIENCE) and
the header its requests carry: a token of the provider's `writer` client, which holds
every permission of the example domain and owns what it creates. Without auth it gives
nothing, and the service answers as it always has.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..oidc.provider import AUDIENCE, Provider, running


@dataclass
class Callers:
    env: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    provider: Provider | None = None

    def bearer(self, client: str) -> dict[str, str]:
        """The header of another of the provider's clients (tests/oidc/provider.mjs)."""
        assert self.provider is not None, "a variant without auth has no callers"
        return {"Authorization": f"Bearer {self.provider.token(client)}"}


@contextmanager
def callers(answers: dict[str, Any]) -> Iterator[Callers]:
    if answers.get("auth", "none") == "none":
        yield Callers()
        return
    with running() as provider:
        env = {"OIDC_ISSUER": provider.issuer, "OIDC_AUDIENCE": AUDIENCE}
        writer = {"Authorization": f"Bearer {provider.token('writer')}"}
        yield Callers(env, writer, provider)
