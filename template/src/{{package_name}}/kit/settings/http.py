"""The HTTP settings' types, and `HttpSettings`, the HTTP settings `KitSettings` takes in.

Lists come from the environment as comma-separated text, each item checked as the
settings load, so that a typo stops start-up instead of turning CORS or proxy trust off
(or on) unnoticed."""

import ipaddress
import re
from typing import Annotated
from typing import Any

from pydantic import AfterValidator
from pydantic import BeforeValidator
from pydantic import Field
from pydantic_settings import BaseSettings
from pydantic_settings import NoDecode

# An origin as a browser sends it: scheme, host and an optional port, with no path (not
# even `/`) and no wildcard; Starlette compares origins as exact strings.
_ORIGIN = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?")


def _split(value: Any) -> Any:
    """`a, b` as the environment holds it; a list as code passes it."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _check_origins(origins: list[str]) -> list[str]:
    for origin in origins:
        if origin != "*" and not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"CORS_ORIGINS: {origin!r} is not an origin; write each as the browser "
                "sends it, scheme://host[:port] with no path (https://app.example.com)"
            )
    return origins


def _check_proxies(proxies: list[str]) -> list[str]:
    for proxy in proxies:
        if proxy == "*":
            continue
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ValueError(
                f"TRUSTED_PROXIES: {proxy!r} is not an IP address or network "
                "(10.0.0.0/8, 127.0.0.1, or * for every peer)"
            ) from None
    return proxies


# Comma-separated origins (`https://app.example.com, http://localhost:3000`), or `*`.
Origins = Annotated[list[str], BeforeValidator(_split), AfterValidator(_check_origins), NoDecode]
# Comma-separated addresses and networks of the proxies in front of the service.
Proxies = Annotated[list[str], BeforeValidator(_split), AfterValidator(_check_proxies), NoDecode]


class HttpSettings(BaseSettings):
    """How long the service waits on a client (the README's "Running in production")."""

    # Seconds a request's body may take to arrive, from the route's first read to its
    # last byte; a slower one gets a 408 and its connection is closed. Raise it for
    # clients that upload large bodies over slow links straight to the service (behind
    # an ingress that buffers bodies, they arrive at the ingress's speed).
    body_read_timeout: float = Field(default=30.0, gt=0, le=3600)
