"""Database and Redis URLs as the settings accept them.

A service speaks one database, chosen by its URL: every usual spelling of a backend's
scheme is pinned to the async driver the kit runs it with.
"""

from typing import Annotated
from typing import Any

from pydantic import AfterValidator
from pydantic import BeforeValidator
from pydantic import SecretStr
from pydantic_settings import NoDecode
from sqlalchemy.engine import URL
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .secrets import SECRET

# The async driver of each backend, by the dialect name SQLAlchemy gives its URLs.
DRIVERS = {
    "postgresql": "postgresql+asyncpg",
    "mysql": "mysql+asyncmy",
    "sqlite": "sqlite+aiosqlite",
}
# Spellings of a scheme that mean each backend; all are pinned to its async driver.
_SCHEMES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "postgresql+asyncpg": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "mysql+asyncmy": "mysql",
    "mariadb+asyncmy": "mysql",
    "sqlite": "sqlite",
    "sqlite+aiosqlite": "sqlite",
}
# Query parameters the drivers take as the password.
_PASSWORD_IN_QUERY = {"password", "passwd", "sslpassword"}
_EXAMPLES = (
    "postgresql://user:password@host:5432/name, mysql://user:password@host:3306/name "
    "or sqlite:///path/to/file.db"
)


def parse_database_url(value: Any, *, server_only: bool = False) -> URL:
    """Accept the usual spellings of a database's URL and pin its async driver.

    `server_only`: the URL may leave the database out (DATABASE_DIRECT_URL's is then
    DATABASE_URL's).
    """
    if isinstance(value, URL):
        url = value
    else:
        try:
            url = make_url(str(value))
        except (ArgumentError, ValueError):
            # Never the parser's words: they quote the part they could not read (a port
            # that is not a number), which is a password whose `@` or `/` was not quoted.
            raise ValueError(
                f"not a database URL; expected {_EXAMPLES}, with any character of the "
                "password other than letters, digits and -._~ percent-encoded"
            ) from None
    if _PASSWORD_IN_QUERY & {key.lower() for key in url.query}:
        # The query is printed with the URL, where only the user part's password is hidden.
        raise ValueError(
            "a password in the URL's query (?password=) would be printed with it; "
            "give it as user:password@host"
        )
    backend = _SCHEMES.get(url.drivername)
    if backend is None:
        drivers = ", ".join(DRIVERS.values())
        raise ValueError(f"unsupported driver {url.drivername!r}; this service speaks {drivers}")
    if backend == "sqlite":
        if not url.database or url.database == ":memory:":
            raise ValueError(
                "the URL names no database file (in-memory databases are per connection)"
            )
    elif not url.database and not server_only:
        raise ValueError("the URL names no database")
    return url.set(drivername=DRIVERS[backend])


def _parse_server_url(value: Any) -> URL:
    return parse_database_url(value, server_only=True)


def _parse_replica_urls(value: Any) -> list[URL]:
    """DB_REPLICA_URLS: comma-separated URLs, each as DATABASE_URL's; empty means none."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return [parse_database_url(url) for url in value]


def _check_redis_url(value: SecretStr | None) -> SecretStr | None:
    """REDIS_URL: redis://, rediss:// (TLS) or unix://; its password is never printed.
    Empty: no cache."""
    if value is None or not value.get_secret_value().strip():
        return None
    scheme = value.get_secret_value().partition("://")[0]
    if scheme not in {"redis", "rediss", "unix"}:
        raise ValueError("not a Redis URL; expected redis://[:password@]host:6379/0")
    return value


# NoDecode: the environment holds URLs as plain text, not JSON. SECRET: they hold
# passwords, so they may come from files (secrets.py).
DatabaseURL = Annotated[URL, BeforeValidator(parse_database_url), NoDecode, SECRET]
ServerURL = Annotated[URL, BeforeValidator(_parse_server_url), NoDecode, SECRET]
ReplicaURLs = Annotated[list[URL], BeforeValidator(_parse_replica_urls), NoDecode, SECRET]
RedisURL = Annotated[SecretStr | None, AfterValidator(_check_redis_url)]
