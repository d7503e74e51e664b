"""`password_router`: the routes of the service's own users, for the service to include.

- `POST {prefix}/register`: JSON email and password; 201 with the user.
- `POST {prefix}/token`: the OAuth2 password form (`username` is the email), as the
  interactive docs' "Authorize" sends it; the token pair.
- `POST {prefix}/refresh`: a refresh token for a new pair (the old one is used up).
- `POST {prefix}/logout`: ends the login of a refresh token; 204 whatever it was.
- `GET {prefix}/me`: the caller, by their access token.

Every refusal is a problem: 401 for credentials (one answer, whatever was wrong), 409
for a taken email, 422 for a password the rules refuse, 429 with Retry-After past the
login throttle.
"""

import uuid
from typing import Annotated

from fastapi import APIRouter
from fastapi import Depends
from fastapi import HTTPException
from fastapi import Request
from fastapi import Response
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel
from pydantic import Field

from ...http.dependencies import WriteSessionDep
from ...http.problems import error_responses
from ...http.schemas import StorableStr
from ...settings import Settings
from ...settings.password import PASSWORD_ROUTES
from ..dependencies import CurrentPrincipal
from .accounts import Accounts
from .accounts import InvalidCredentials
from .accounts import Throttled
from .accounts import TokenPair
from .schemas import Email
from .schemas import RefreshRequest
from .schemas import TokenResponse
from .schemas import UserRead

_WRONG = "the email or password is wrong, or the account is disabled"


def _unauthenticated(detail: str, error: str = "") -> HTTPException:
    challenge = f'Bearer error="{error}"' if error else "Bearer"
    return HTTPException(401, detail, headers={"WWW-Authenticate": challenge})


def client_address(request: Request) -> str:
    """The peer, or the client a trusted proxy names (`kit/http/proxies.py`)."""
    return request.client.host if request.client else "unknown"


def too_many(error: Throttled) -> HTTPException:
    return HTTPException(429, str(error), headers={"Retry-After": str(error.retry_after)})


def _tokens(pair: TokenPair) -> TokenResponse:
    return TokenResponse(
        access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token
    )


def password_router(
    settings: Settings, accounts: Accounts | None = None, *, prefix: str = PASSWORD_ROUTES
) -> APIRouter:
    """The routes, on one `Accounts` (made from `settings` unless given: tests give one
    of their own). Registration is left out when PASSWORD_REGISTRATION_OPEN is off."""
    accounts = accounts or Accounts(settings)
    # The password rules' lengths, in the OpenAPI document as in the check.
    lengths = Field(
        min_length=settings.password_min_length, max_length=settings.password_max_length
    )

    class Registration(BaseModel):
        email: Email
        password: Annotated[StorableStr, lengths]

    router = APIRouter(prefix=prefix, tags=["auth"])
    # Named as the kit's bearer scheme (kit/auth/dependencies.py): one scheme in the
    # OpenAPI document, which AUTH=password makes the password form (kit/http/openapi.py).
    if settings.password_registration_open:

        @router.post(
            "/register",
            status_code=201,
            response_model=UserRead,
            responses=error_responses(409, 422, 429),
        )
        async def register(
            body: Registration, request: Request, session: WriteSessionDep
        ) -> UserRead:
            try:
                user = await accounts.register(
                    session, body.email, body.password, address=client_address(request)
                )
            except Throttled as error:
                raise too_many(error) from None
            return UserRead(id=user.id, email=user.email, permissions=user.permissions.split())

    @router.post("/token", response_model=TokenResponse, responses=error_responses(401, 422, 429))
    async def token(
        form: Annotated[OAuth2PasswordRequestForm, Depends()],
        request: Request,
        session: WriteSessionDep,
    ) -> TokenResponse:
        address = client_address(request)
        try:
            pair = await accounts.login(session, form.username, form.password, address)
        except Throttled as error:
            raise too_many(error) from None
        except InvalidCredentials:
            raise _unauthenticated(_WRONG) from None
        return _tokens(pair)

    @router.post("/refresh", response_model=TokenResponse, responses=error_responses(401, 422))
    async def refresh(body: RefreshRequest, session: WriteSessionDep) -> TokenResponse:
        try:
            return _tokens(await accounts.refresh(session, body.refresh_token))
        except InvalidCredentials:
            raise _unauthenticated("the refresh token is not valid", "invalid_token") from None

    @router.post("/logout", status_code=204, responses=error_responses(422))
    async def logout(body: RefreshRequest, session: WriteSessionDep) -> Response:
        await accounts.logout(session, body.refresh_token)
        return Response(status_code=204)

    @router.get("/me", response_model=UserRead, responses=error_responses(401))
    async def me(principal: CurrentPrincipal) -> UserRead:
        if principal.anonymous:  # AUTH is not password: nobody to tell about
            raise _unauthenticated("an access token of this service's users is needed")
        return UserRead(
            id=uuid.UUID(principal.subject),
            email=str(principal.claims["email"]),
            permissions=sorted(principal.permissions),
        )

    return router
