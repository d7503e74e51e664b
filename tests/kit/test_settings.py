"""The kit's settings: URLs pinned to their async driver, every bad value refused at
start-up with its name, each backend's own settings, and capabilities turned on
without their packages."""

import logging
import re
import sys
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from service.kit.cache import open_cache
from service.kit.extras import CACHE_MODULES, DRIVER_MODULES, TRACING_MODULES, MissingPackages
from service.kit.observability.tracing import telemetry
from service.kit.settings import SettingsError, format_validation_error
from service.main import create_app
from service.settings import Settings, get_settings

from .conftest import SERVICE_ROOT
from .databases import BACKEND, BACKENDS, FOREIGN_URL

# DATABASE_URL as a deployment of each backend may spell it, with a password.
PLAIN_URLS = {name: backend.plain_url for name, backend in BACKENDS.items()}
# Settings of the deployment the suite runs in (tests/test_deployment.py runs it behind
# PgBouncer), which a URL of another backend must not inherit.
DEPLOYMENT = (
    "DB_BEHIND_PGBOUNCER",
    "DATABASE_DIRECT_URL",
    "DATABASE_OWNER_URL",
    "DB_PGBOUNCER_MAX_CLIENT_CONN",
    "DB_REPLICA_URLS",
    "MIGRATE_ON_STARTUP",
)


@pytest.fixture(autouse=True)
def settings_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's settings are the values it gives, not the run's deployment."""
    for name in DEPLOYMENT:
        monkeypatch.delenv(name, raising=False)


@pytest.mark.parametrize("backend", sorted(PLAIN_URLS))
def test_plain_urls_get_the_async_driver(backend: str) -> None:
    settings = Settings(database_url=PLAIN_URLS[backend])
    url = settings.database_url
    assert (url.get_backend_name(), url.drivername) == (
        backend,
        f"{backend}+{DRIVER_MODULES[backend]}",
    )


@pytest.mark.parametrize("backend", ["postgresql", "mysql"])
def test_the_password_never_shows_when_the_url_is_printed(
    caplog: pytest.LogCaptureFixture, backend: str
) -> None:
    settings = Settings(database_url=PLAIN_URLS[backend])
    logging.getLogger("test").warning("url %s", settings.database_url)
    assert "s3cr3t" not in str(settings.database_url)
    assert "s3cr3t" not in caplog.text
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("DATABASE_URL", FOREIGN_URL, "unsupported driver"),
        ("DATABASE_URL", "not a url", "not a database URL"),
        *(
            ("DATABASE_URL", backend.no_database_url, "names no database")
            for backend in BACKENDS.values()
        ),
        ("DB_POOL_SIZE", "0", "greater than or equal to 1"),
        ("DB_POOL_TIMEOUT", "soon", "valid number"),
        ("DB_POOL_PRE_PING", "maybe", "valid boolean"),
    ],
)
def test_a_bad_setting_stops_start_up_with_its_name(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as caught:
        get_settings()
    get_settings.cache_clear()
    text = str(caught.value)
    assert env in text and message in text
    assert "Traceback" not in text


# A URL of each backend the kit speaks, as DATABASE_URL may spell it.
URLS = {
    "postgresql": "postgres://app@db:5432/app",
    "mysql": "mariadb://app@db:3306/app",
    "sqlite": "sqlite:///./app.db",
}


@pytest.mark.parametrize("backend", sorted(URLS))
def test_each_backends_url_gets_its_async_driver(backend: str) -> None:
    """The kit speaks every backend; DATABASE_URL says which this deployment uses."""
    url = Settings(database_url=URLS[backend]).database_url
    assert url.get_backend_name() == backend
    assert url.drivername == f"{backend}+{DRIVER_MODULES[backend]}"


@pytest.mark.parametrize(
    ("backend", "env", "value", "message"),
    [
        ("mysql", "DB_REPLICA_URLS", URLS["mysql"], "read replicas are built for PostgreSQL only"),
        ("sqlite", "DB_REPLICA_URLS", URLS["sqlite"], "read replicas are built for PostgreSQL"),
        ("mysql", "DB_BEHIND_PGBOUNCER", "true", "PgBouncer pools PostgreSQL connections only"),
        ("sqlite", "DB_PGBOUNCER_MAX_CLIENT_CONN", "100", "PgBouncer pools PostgreSQL"),
        ("sqlite", "MIGRATE_ON_STARTUP", "true", "run `alembic upgrade head` before starting"),
        ("sqlite", "DATABASE_DIRECT_URL", URLS["postgresql"], "a SQLite file has no server"),
        ("sqlite", "DATABASE_OWNER_URL", URLS["postgresql"], "a SQLite file has no roles"),
    ],
)
def test_another_databases_setting_stops_start_up_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, backend: str, env: str, value: str, message: str
) -> None:
    """Ignored, a setting DATABASE_URL's backend does not have would look as if it worked."""
    monkeypatch.setenv("DATABASE_URL", URLS[backend])
    monkeypatch.delenv(env, raising=False)  # unset: what this backend does anyway
    get_settings.cache_clear()
    get_settings()
    monkeypatch.setenv(env, value)
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as caught:
        get_settings()
    get_settings.cache_clear()
    text = str(caught.value)
    assert f"{env}: Value error, " in text and message in text


@pytest.mark.parametrize(
    ("update", "modules", "extra"),
    [
        ({"redis_url": SecretStr("redis://127.0.0.1:6379/0")}, CACHE_MODULES, "cache"),
        ({"tracing_enabled": True}, TRACING_MODULES, "tracing"),
    ],
    ids=["cache", "tracing"],
)
def test_a_capability_turned_on_without_its_extra_stops_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, update: dict[str, Any], modules: tuple[str, ...], extra: str
) -> None:
    """The cache and traces are idle until configured; configured, their packages (an
    extra of pyproject.toml) must be there, or start-up says which extra to install."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)  # as if the extra were not installed
    settings = Settings(database_url=BACKEND.plain_url).model_copy(update=update)
    with pytest.raises(MissingPackages) as caught:
        create_app(settings)
    message = str(caught.value)
    assert "\n" not in message, message
    assert f"uv sync --extra {extra}" in message and f"pip install '.[{extra}]'" in message


@pytest.mark.parametrize("backend", sorted(DRIVER_MODULES))
def test_a_url_whose_driver_is_missing_stops_start_up_in_one_line(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    monkeypatch.setitem(sys.modules, DRIVER_MODULES[backend], None)
    settings = Settings(database_url=URLS[backend], redis_url="", tracing_enabled=False)
    with pytest.raises(MissingPackages) as caught:
        create_app(settings)
    message = str(caught.value)
    assert "\n" not in message and f"pip install {DRIVER_MODULES[backend]}" in message


def test_nothing_is_configured_but_what_the_settings_turn_on() -> None:
    """Without REDIS_URL and TRACING_ENABLED the cache and traces stay idle code."""
    settings = Settings(database_url=BACKEND.plain_url, redis_url="", tracing_enabled=False)
    assert settings.redis_url is None and not settings.tracing_enabled
    assert open_cache(settings) is None
    assert telemetry(settings) == {"tracing": False, "metrics": False, "logs": False}


def test_pgbouncer_without_a_direct_url_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """Through PgBouncer's transaction pooling, the migrations' session settings and the
    start-up migration lock would land on a server connection other clients share next."""
    monkeypatch.setenv("DATABASE_URL", URLS["postgresql"])
    monkeypatch.setenv("DB_BEHIND_PGBOUNCER", "true")
    monkeypatch.delenv("DATABASE_DIRECT_URL", raising=False)
    get_settings.cache_clear()
    with pytest.raises(SettingsError) as caught:
        get_settings()
    get_settings.cache_clear()
    assert "DB_BEHIND_PGBOUNCER=true needs DATABASE_DIRECT_URL" in str(caught.value)
    monkeypatch.setenv("DATABASE_DIRECT_URL", PLAIN_URLS["postgresql"])
    assert get_settings().database_direct_url is not None
    get_settings.cache_clear()


def test_migrations_run_as_the_owner_past_any_pooler() -> None:
    """DATABASE_OWNER_URL is where migrations run (in DATABASE_URL's database when it names
    none); the service's own session past PgBouncer stays DATABASE_DIRECT_URL's."""
    settings = Settings(
        database_url="postgresql://app@bouncer:6432/app",
        database_direct_url="postgresql://app@db:5432",
        database_owner_url="postgresql://owner:s3cr3t@db:5432",
        db_behind_pgbouncer=True,
    )
    assert (settings.migration_url.username, settings.migration_url.host) == ("owner", "db")
    assert settings.migration_url.database == "app"
    assert (settings.direct_url.username, settings.direct_url.host) == ("app", "db")
    one_role = Settings(database_url="postgresql://app@db:5432/app", database_owner_url=None)
    assert one_role.migration_url == one_role.direct_url == one_role.database_url


def test_an_owner_url_through_pgbouncer_stops_start_up() -> None:
    """Migrations hold a session-level lock and settings: never through transaction pooling."""
    with pytest.raises(ValidationError) as caught:
        Settings(
            database_url="postgresql://app@bouncer:6432/app",
            database_direct_url="postgresql://app@db:5432",
            database_owner_url="postgresql://owner@bouncer:6432/app",
            db_behind_pgbouncer=True,
        )
    assert "DATABASE_OWNER_URL leads to PgBouncer" in str(caught.value)


def test_bad_url_error_does_not_echo_the_password() -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(database_url=FOREIGN_URL)
    assert "s3cr3t" not in format_validation_error(caught.value)


def test_production_refuses_the_development_cursor_secret() -> None:
    with pytest.raises(ValidationError, match="CURSOR_SECRET must be set"):
        Settings(environment="production")
    assert Settings(environment="production", cursor_secret="s" * 32).environment == "production"


def _compose_placeholder() -> str:
    """The CURSOR_SECRET that compose.yaml ships, read from the file itself."""
    compose = (SERVICE_ROOT / "compose.yaml").read_text()
    found = re.search(r"^\s*CURSOR_SECRET:\s*(\S+)\s*$", compose, re.MULTILINE)
    assert found, "compose.yaml sets no CURSOR_SECRET"
    return found.group(1)


@pytest.mark.parametrize(
    "secret",
    [
        pytest.param("", id="empty"),
        pytest.param("s" * 31, id="31-bytes"),
        pytest.param("é" * 15 + "s", id="16-characters-31-bytes"),
        pytest.param("change-me-in-production" * 2, id="placeholder-repeated"),
        pytest.param(_compose_placeholder(), id="compose-placeholder"),
    ],
)
def test_production_refuses_a_short_or_placeholder_cursor_secret(secret: str) -> None:
    with pytest.raises(ValidationError) as caught:
        Settings(environment="production", cursor_secret=secret)
    lines = format_validation_error(caught.value).splitlines()
    assert len(lines) == 2, lines  # the heading and one line on CURSOR_SECRET
    assert "CURSOR_SECRET" in lines[1] and "at least 32 bytes" in lines[1]
    assert not secret or secret not in lines[1]  # a secret is never echoed
    assert Settings(environment="development", cursor_secret=secret).environment == "development"
