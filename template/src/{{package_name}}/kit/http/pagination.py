"""Query parameters and response bodies for offset and cursor pages."""

from typing import Annotated
from typing import Generic
from typing import TypeVar

from fastapi import Depends
from fastapi import Query
from fastapi import Request
from pydantic import BaseModel
from pydantic import ConfigDict

from ..errors import InvalidQuery
from ..repository.pagination import CursorCodec
from .dependencies import app_settings
from .direct import direct
from .openapi import maximum_from

T = TypeVar("T")


class OffsetPage(BaseModel, Generic[T]):
    model_config = ConfigDict(from_attributes=True)

    items: list[T]
    total: int
    page: int
    size: int


class CursorPage(BaseModel, Generic[T]):
    model_config = ConfigDict(from_attributes=True)

    items: list[T]
    next_cursor: str | None
    size: int


@direct
async def page_size(
    request: Request,
    size: Annotated[
        int,
        Query(
            ge=1,
            description="Items per page, at most MAX_PAGE_SIZE",
            json_schema_extra=maximum_from("max_page_size"),
        ),
    ] = 20,
) -> int:
    settings = await app_settings(request)  # not a nested dependency: those cost per request
    if size > settings.max_page_size:
        raise InvalidQuery(f"size must be at most {settings.max_page_size}", field="size")
    return size


@direct
async def page_number(
    request: Request,
    page: Annotated[
        int,
        Query(
            ge=1,
            description="1-based page number, at most MAX_PAGE_OFFSET / MAX_PAGE_SIZE + 1",
            json_schema_extra=maximum_from("max_page_number"),
        ),
    ] = 1,
) -> int:
    """The page, refused past `Settings.max_page_number`: the database reads every row an
    offset skips, so deep pages are walked by cursor instead."""
    last = (await app_settings(request)).max_page_number
    if page > last:
        raise InvalidQuery(
            f"page must be at most {last}, the deepest an offset page goes: list by cursor "
            "to go further",
            field="page",
        )
    return page


@direct
async def children_per_parent(request: Request) -> int:
    """How many children a listing of parents carries with each (`MAX_CHILDREN_PER_PARENT`)."""
    return (await app_settings(request)).max_children_per_parent


@direct
async def cursor_codec(request: Request) -> CursorCodec:
    """Signs and checks cursors with the app's `CURSOR_SECRET` (made once per app)."""
    state = request.app.state
    codec: CursorCodec | None = getattr(state, "cursor_codec", None)
    if codec is None:
        settings = await app_settings(request)
        codec = state.cursor_codec = CursorCodec(settings.cursor_secret.get_secret_value())
    return codec


PageNumber = Annotated[int, Depends(page_number)]
PageSize = Annotated[int, Depends(page_size)]
ChildrenPerParent = Annotated[int, Depends(children_per_parent)]
Cursor = Annotated[
    str | None,
    Query(
        max_length=512,
        description="`next_cursor` of the previous page; omit for the first",
    ),
]
Cursors = Annotated[CursorCodec, Depends(cursor_codec)]
