"""`CrudService[ModelT]`: the transaction-owning operations every resource shares.

Each write is a unit of work run by `run_in_transaction`, so it commits (or rolls
back and retries) inside the service call, and route handlers never see a session.
"""

import uuid
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Mapping
from typing import ClassVar
from typing import Generic
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from ..core.config import Settings
from ..core.errors import NotFound
from ..core.errors import StaleVersion
from .pagination import CursorCodec
from .repository import BaseRepository
from .repository import ModelT
from .transactions import run_in_transaction

T = TypeVar("T")


class CrudService(Generic[ModelT]):
    """Subclasses set `resource` and assign `self.repository` in `__init__`."""

    repository: BaseRepository[ModelT]
    resource: ClassVar[str]
    # Human messages for violated constraints, keyed by their conventional names.
    constraint_messages: ClassVar[dict[str, str]] = {}

    def __init__(self, session: AsyncSession, settings: Settings) -> None:
        self.session = session
        self.settings = settings
        self.codec = CursorCodec(settings.cursor_secret.get_secret_value())

    async def transaction(self, work: Callable[[], Awaitable[T]]) -> T:
        return await run_in_transaction(
            self.session,
            work,
            attempts=self.settings.db_retry_attempts,
            resource=self.resource,
            messages=self.constraint_messages,
        )

    async def get(self, id: uuid.UUID, *, include_deleted: bool = False) -> ModelT:
        obj = await self.repository.get(id, include_deleted=include_deleted)
        if obj is None:
            raise NotFound(self.resource, id)
        return obj

    async def update(self, id: uuid.UUID, version: int, values: Mapping[str, object]) -> ModelT:
        async def work() -> ModelT:
            obj = await self.get(id)
            current: int = obj.version  # type: ignore[attr-defined]
            if current != version:
                raise StaleVersion(self.resource, expected=version, actual=current)
            return await self.repository.update(obj, values)

        return await self.transaction(work)

    async def delete(self, id: uuid.UUID) -> None:
        async def work() -> None:
            await self.repository.delete(await self.get(id))

        await self.transaction(work)

    async def restore(self, id: uuid.UUID) -> ModelT:
        async def work() -> ModelT:
            return await self.repository.restore(await self.get(id, include_deleted=True))

        return await self.transaction(work)
