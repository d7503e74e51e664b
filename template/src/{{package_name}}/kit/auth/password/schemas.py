"""What the password routes take and answer."""

import uuid
from typing import Annotated
from typing import Literal

from pydantic import BaseModel
from pydantic import Field

from ...http.schemas import StorableStr
from .models import EMAIL_LENGTH

# Something at something: the address is checked by mail sent to it, not by a pattern.
Email = Annotated[
    StorableStr, Field(min_length=3, max_length=EMAIL_LENGTH, pattern=r"^[^@\s]+@[^@\s]+$")
]
# A refresh token as the service gives them (URL-safe base64), with room to spare.
RefreshText = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_-]+$")]


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    permissions: list[str]


class TokenResponse(BaseModel):
    """RFC 6749's token response; `refresh_token` is good for one use."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the scheme, not a secret
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    refresh_token: RefreshText
