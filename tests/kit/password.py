"""What the tests of the password machinery share: cheap hashing settings, an app with
the password routes on the test's database (requests commit for real), and logging in."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from httpx import ASGITransport, AsyncClient, Response
from service.kit.auth.password.models import LoginSession, LoginThrottle, RefreshToken, User
from service.settings import Settings

from .conftest import service_app

# The tables, for the tests that clean up after committing.
TABLES = (RefreshToken, LoginSession, LoginThrottle, User)
# Argon2id at its cheapest: the tests check behaviour, not cost.
CHEAP = {
    "password_hash_time_cost": 1,
    "password_hash_memory_kib": 1024,
    "password_hash_parallelism": 1,
    "password_default_permissions": "things:read",
    # The app then builds the password routes and the authenticator (kit/app.py).
    "auth": "password",
}
PASSWORD = "correct horse battery"


def cheap(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={**CHEAP, **changes})


@asynccontextmanager
async def password_app(
    settings: Settings, address: str = "192.0.2.10"
) -> AsyncIterator[AsyncClient]:
    """An app of its own (its own pools, as another worker or pod has) with AUTH=password:
    its routes at /auth, called from `address`."""
    app = service_app(settings)
    transport = ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    async with (
        app.router.lifespan_context(app),
        AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


async def register(client: AsyncClient, email: str, password: str = PASSWORD) -> Response:
    return await client.post("/auth/register", json={"email": email, "password": password})


async def login(client: AsyncClient, email: str, password: str = PASSWORD) -> Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
