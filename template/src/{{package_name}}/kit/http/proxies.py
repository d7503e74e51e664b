"""Which requests come through a proxy the service trusts (TRUSTED_PROXIES).

Only such a request has its client taken from X-Forwarded-For and its scheme from
X-Forwarded-Proto (uvicorn's `ProxyHeadersMiddleware`, which `kit/app.py` runs inside
this one), and only such a request keeps the X-Request-ID it arrives with
(`RequestIdMiddleware`): from anyone else, those headers are whatever the client chose
to write.
"""

import ipaddress

from starlette.types import ASGIApp
from starlette.types import Receive
from starlette.types import Scope
from starlette.types import Send

# Set in a request's scope when its peer is a trusted proxy.
TRUSTED_PEER = "kit.trusted_peer"


def from_trusted_proxy(scope: Scope) -> bool:
    """Whether the request's peer is a proxy TRUSTED_PROXIES names."""
    return scope.get(TRUSTED_PEER, False) is True


class TrustedPeer:
    """Marks the requests whose peer `proxies` names (addresses, networks, or `*`, as
    uvicorn's middleware reads them). Outermost among the kit's middleware, it sees the
    peer that actually connected, before the forwarded client replaces it."""

    def __init__(self, app: ASGIApp, proxies: list[str]) -> None:
        self.app = app
        self.every = "*" in proxies
        self.networks = [ipaddress.ip_network(p, strict=False) for p in proxies if p != "*"]

    def trusts(self, client: tuple[str, int] | None) -> bool:
        if self.every:
            return True
        if client is None:  # a Unix socket: no address to match
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusts(scope.get("client")):
            scope[TRUSTED_PEER] = True
        await self.app(scope, receive, send)
