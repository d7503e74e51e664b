"""The service's own users: Argon2id passwords, short-lived access tokens, rotating
refresh tokens with reuse detection, and a login throttle kept in the database.

Idle until the service includes `password_router(settings)` and authenticates with
`PasswordAuthenticator(settings, db.write_session)`; its packages are the `password`
extra. The tables are `models.py`'s, which the `password` answer's migration creates.

- `routes.py`: `password_router`, the HTTP routes (register, token, refresh, logout, me).
- `accounts.py`: `Accounts`, what those routes do, for the service's own code too.
- `authenticator.py`: `PasswordAuthenticator`, an access token to a `Principal`.
- `hashing.py`, `tokens.py`, `throttle.py`: the hash, the tokens, the throttle.
- `admin.py`: the operator's command (create a user, permissions, disable, revoke).
"""

from . import packages  # noqa: F401 - first: stops start-up in one line without the extra
from .accounts import Accounts
from .authenticator import PasswordAuthenticator
from .routes import password_router

__all__ = ["Accounts", "PasswordAuthenticator", "password_router"]
