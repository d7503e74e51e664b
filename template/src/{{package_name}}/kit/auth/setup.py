"""The authenticator AUTH names, built once with the app (`app.state.authenticator`).

Each way of authenticating imports its packages (an extra of the service) only when it
is chosen, so a service without it starts without them.
"""

from collections.abc import Callable

from ..db.session import ReadSession
from ..settings import Settings
from .principal import Authenticator


def build_authenticator(
    settings: Settings, sessions: Callable[[], ReadSession] | None = None
) -> Authenticator | None:
    """None when AUTH=none: every caller is then the anonymous principal. `sessions`
    opens the session AUTH=password reads its users and logins in (the primary's)."""
    if settings.auth == "password":
        from .password import PasswordAuthenticator

        if sessions is None:
            raise TypeError("AUTH=password reads users from the database: give sessions")
        return PasswordAuthenticator(settings, sessions)
    if settings.auth == "oidc":
        from .oidc import OidcAuthenticator

        return OidcAuthenticator(settings)
    return None


async def close_authenticator(authenticator: Authenticator | None) -> None:
    """Release what the authenticator holds (the provider's HTTP connections)."""
    close = getattr(authenticator, "close", None)
    if close is not None:
        await close()
