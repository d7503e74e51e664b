"""A scratch database with two roles of its own, as production has them: the owner,
which migrates, and the service's role, which reads and writes rows (`kit/migrations/roles.py`).
The `roles` fixture (conftest.py) hands one to a test."""

import secrets
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from service.kit.db.dialect import one_off_connect_args
from service.kit.migrations.roles import create_roles
from service.settings import Settings
from sqlalchemy import URL, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from .databases import BACKEND, scratch_database, server_url

GADGET = "CREATE TABLE gadget (id INTEGER PRIMARY KEY, name VARCHAR(20))"
RELIC = "CREATE TABLE relic (id INTEGER PRIMARY KEY, name VARCHAR(20))"


@dataclass(frozen=True)
class Roles:
    admin: URL  # the administrator, on the service's database
    owner: URL
    service: URL

    def settings(self, settings: Settings, **update: object) -> Settings:
        """The service's settings with both roles: DATABASE_URL the service's role."""
        roles = {"database_url": self.service, "database_owner_url": self.owner}
        return settings.model_copy(update={**roles, **update})


async def run(url: URL, *statements: str) -> list[Any]:
    """Each statement in its own transaction, as `url`'s role; what each returned."""
    engine = create_async_engine(url, poolclass=NullPool, connect_args=one_off_connect_args(url))
    results: list[Any] = []
    try:
        for statement in statements:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement))
                results.append(result.all() if result.returns_rows else None)
    finally:
        await engine.dispose()
    return results


async def drop_role(name: str) -> None:
    if BACKEND.name == "postgresql":
        await BACKEND.admin(f'DROP ROLE IF EXISTS "{name}"')  # type: ignore[attr-defined]
    else:
        await BACKEND.admin(f"DROP USER IF EXISTS '{name}'@'%'")  # type: ignore[attr-defined]


@asynccontextmanager
async def database_with_roles(settings: Settings) -> AsyncIterator[Roles]:
    """A new database with an owner and a service role of its own, which an earlier
    release's single role (the owner here) already migrated: `gadget` exists."""
    suffix = uuid.uuid4().hex[:12]
    owner_name, service_name = f"o_{suffix}", f"s_{suffix}"
    async with scratch_database("roles") as url:
        # The administrator and the owner on the server itself, the service's role where
        # DATABASE_URL leads (through PgBouncer, when the run is behind one).
        direct = settings.direct_url
        admin = server_url().set(host=direct.host, port=direct.port, database=url.database)
        found = Roles(
            admin=admin,
            owner=admin.set(username=owner_name, password=secrets.token_hex(8)),
            service=server_url().set(
                database=url.database, username=service_name, password=secrets.token_hex(8)
            ),
        )
        try:
            await run(admin, RELIC)  # made by the administrator before any role
            await create(found, settings)
            await run(found.owner, GADGET)
            await create(found, settings)  # again, as an upgrade: gadget gets its grants
            yield found
        finally:
            if BACKEND.name == "postgresql":
                await BACKEND.drop(url)  # the database first: its grants go with it
            for name in (owner_name, service_name):
                await drop_role(name)


async def create(roles: Roles, settings: Settings) -> list[str]:
    engine = create_async_engine(roles.admin, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            return await create_roles(conn, roles.settings(settings))
    finally:
        await engine.dispose()
