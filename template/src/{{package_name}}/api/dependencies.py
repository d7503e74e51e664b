"""Dependencies every router shares."""

from typing import Annotated

from fastapi import Depends
from fastapi import Request

from ..core.config import Settings


async def app_settings(request: Request) -> Settings:
    """The settings the app was created with (tests create apps with their own)."""
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(app_settings)]
