"""`KitSettings`: everything the kit reads, from the environment (and `.env`).

The service's own `Settings` (src/<package>/settings.py) extends it with its defaults
and its own settings. The optional capabilities are idle until a setting turns them on:
the cache with REDIS_URL, traces with TRACING_ENABLED, background jobs with
JOBS_ENABLED, authentication with AUTH (kit/extras.py checks that their packages are
installed).
"""

from pathlib import Path
from typing import Annotated
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import Field
from pydantic import SecretStr
from pydantic import ValidationError
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic import model_validator
from pydantic_settings import BaseSettings
from pydantic_settings import PydanticBaseSettingsSource
from pydantic_settings import SettingsConfigDict

from .auth import AuthSettings
from .http import HttpSettings
from .http import Origins
from .http import Proxies
from .jobs import JobsSettings
from .password import PasswordSettings
from .secrets import SecretFiles
from .secrets import SecretSourceError
from .urls import RedisURL

_DEV_CURSOR_SECRET = "dev-only-cursor-secret"  # noqa: S105 - refused in production below
# Production's cursor secret: random, at least this many bytes (HMAC-SHA256's key size),
# and none of the placeholders this project's files ship (compose.yaml, .env.example).
MIN_CURSOR_SECRET_BYTES = 32
_PLACEHOLDER_MARKS = ("change-me", "changeme", "change_me", "dev-only", "placeholder")
# Settings that default to SERVICE_NAME when they are not set themselves.
_NAMED_AFTER_THE_SERVICE = ("db_application_name", "cache_key_prefix")
_NAME = r"^[A-Za-z0-9_.-]+$"
# A name as SERVICE_NAME and CACHE_KEY_PREFIX take it (letters, digits, `_.-`).
ServiceName = Annotated[str, Field(min_length=1, max_length=63, pattern=_NAME)]


class KitSettings(AuthSettings, PasswordSettings, JobsSettings, HttpSettings):
    """Every tunable of the kit; the comment says when to change it."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        arbitrary_types_allowed=True,
        hide_input_in_errors=True,  # a bad DATABASE_URL must not echo its password
    )

    # A directory holding secret settings as files named after them (DATABASE_URL,
    # CURSOR_SECRET...), as Kubernetes mounts a Secret; or give one file as NAME_FILE.
    # A secret given twice (a file and the environment) stops start-up (secrets.py).
    secrets_dir: Path | None = None
    # Which deployment this is; production refuses development-only defaults.
    environment: Literal["development", "test", "production"] = "development"
    # The service's name: the default of DB_APPLICATION_NAME, CACHE_KEY_PREFIX and of the
    # traces' service name (OTEL_SERVICE_NAME).
    service_name: ServiceName = "service"
    # Log level for the service's own loggers.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # `json`: one JSON object per line (for a log collector); `text`: lines for people.
    log_format: Literal["text", "json"] = "text"
    # Prometheus metrics at /metrics. Off: no endpoint and no per-request figures.
    metrics_enabled: bool = True
    # Serve /metrics on this port instead of the app's, so it stays off the public
    # listener (set it in production). With several workers the first one serves it.
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    # Trace requests and their SQL statements with OpenTelemetry, sent over OTLP (the
    # `tracing` extra; OpenTelemetry's OTEL_* variables say where and how much).
    tracing_enabled: bool = False

    # Seconds the readiness probe waits for the database before answering 503.
    health_timeout: float = Field(default=2.0, gt=0, le=60)
    # Seconds one readiness answer serves every probe: a flood costs one check per period.
    health_cache_seconds: float = Field(default=1.0, ge=0, le=60)

    # Redis for the read-through cache (`kit/cache/`, the `cache` extra). Unset or empty:
    # no cache. Down, slow or full, it costs speed, never a request: the database
    # answers and readiness says "cache": "degraded".
    redis_url: RedisURL = None
    # Seconds an entry lives. Writes drop entries at once; this bounds what a drop that
    # could not reach Redis leaves behind, and the memory of rows nobody reads.
    cache_ttl_seconds: int = Field(default=300, ge=1, le=86_400)
    # Seconds a Redis command may take before the request reads the database instead:
    # keep it near a database read's time (a slow cache must not slow the service).
    cache_timeout: float = Field(default=0.1, gt=0, le=10)
    # Seconds reads leave Redis alone after it failed, before they try it again.
    cache_retry_seconds: float = Field(default=2.0, gt=0, le=600)
    # The start of every key: services sharing a Redis never read each other's entries.
    # Unset: SERVICE_NAME.
    cache_key_prefix: str = Field(default="service", min_length=1, max_length=100, pattern=_NAME)

    # Largest page a client may ask for.
    max_page_size: int = Field(default=100, ge=1, le=1000)
    # Signs pagination cursors and consistency tokens, so that a tampered or forged one
    # is refused or ignored. Set it in production.
    cursor_secret: SecretStr = SecretStr(_DEV_CURSOR_SECRET)
    # Largest request body, in bytes; larger ones get a 413 before they are read. A route
    # that needs more declares its own (`kit.http.middleware.body_limit`).
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # How many rows an offset page may skip: a deep offset reads every row it skips.
    # Beyond it the client walks on by cursor (`max_page_number`).
    max_page_offset: int = Field(default=10_000, ge=0)
    # Children a listing carries with each parent (tasks in /projects/with-tasks); the
    # rest are a cursor away, so one response stays bounded however big a parent grows.
    max_children_per_parent: int = Field(default=20, ge=1, le=1000)

    # Browser origins allowed to call the API from their pages (CORS), comma-separated:
    # `https://app.example.com`. Empty: no CORS headers, browsers allow same-origin only.
    cors_origins: Origins = Field(default_factory=list)
    # Let those origins send cookies and Authorization (the response says
    # Access-Control-Allow-Credentials). Refused with CORS_ORIGINS=*.
    cors_allow_credentials: bool = False
    # Addresses or networks of the proxies in front of the service (the ingress, a load
    # balancer), comma-separated: only a request from one of them has its client taken
    # from X-Forwarded-For (and its scheme from X-Forwarded-Proto). Empty: the peer is
    # the client, whatever the headers say.
    trusted_proxies: Proxies = Field(default_factory=list)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Secret settings from files (`NAME_FILE`, SECRETS_DIR) besides the environment
        and `.env`; values passed to the class in code come first, as always."""
        given = {"the environment": env_settings, ".env": dotenv_settings}
        return init_settings, SecretFiles(settings_cls, given), env_settings, dotenv_settings

    @property
    def max_page_number(self) -> int:
        """The last page a client may ask for: at the largest page size it starts at most
        `max_page_offset` rows in, and so does every page at any smaller size. A single
        bound, so the OpenAPI document states it as `page`'s maximum."""
        return self.max_page_offset // self.max_page_size + 1

    @field_validator("cors_allow_credentials", mode="after")
    @classmethod
    def _credentials_only_for_named_origins(cls, value: bool, info: ValidationInfo) -> bool:
        if value and "*" in info.data.get("cors_origins", ()):
            # Any site could then act with its visitors' credentials.
            raise ValueError(
                "CORS_ORIGINS=* cannot be used with CORS_ALLOW_CREDENTIALS: name the origins"
            )
        return value

    @model_validator(mode="before")
    @classmethod
    def _named_after_the_service(cls, data: Any) -> Any:
        if isinstance(data, dict):
            name = data.get("service_name", cls.model_fields["service_name"].default)
            for field in _NAMED_AFTER_THE_SERVICE:
                if not data.get(field):
                    data[field] = name
        return data

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> "KitSettings":
        if self.environment == "production" and not _strong_secret(self.cursor_secret):
            # One line, and never the value: it may be a real secret that is too short.
            raise ValueError(
                f"CURSOR_SECRET must be set in production to a random value of at least "
                f"{MIN_CURSOR_SECRET_BYTES} bytes, not a placeholder (make one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        if (
            self.environment == "production"
            and self.auth == "oidc"
            and not self.oidc_issuer.startswith("https://")
            and self.oidc_issuer  # unset: start-up stops on that (missing_for_auth)
        ):
            # Keys fetched over plain HTTP can be swapped by anyone on the path.
            raise ValueError("OIDC_ISSUER must be an https:// URL in production")
        return self


def _strong_secret(secret: SecretStr) -> bool:
    """Long enough to resist guessing, and not one of the shipped placeholders."""
    value = secret.get_secret_value()
    if len(value.encode()) < MIN_CURSOR_SECRET_BYTES:
        return False
    lowered = value.lower()
    return not any(mark in lowered for mark in _PLACEHOLDER_MARKS)


_HEADING = "Invalid settings (from the environment, .env or secret files):"


class SettingsError(SystemExit):
    """Stops start-up with a readable message instead of a traceback."""


def format_validation_error(error: ValidationError) -> str:
    lines = [_HEADING]
    for item in error.errors():
        name = "_".join(str(part) for part in item["loc"]).upper() or "settings"
        lines.append(f"  {name}: {item['msg']}")
    return "\n".join(lines)


SettingsT = TypeVar("SettingsT", bound=KitSettings)


def load_settings(settings: type[SettingsT]) -> SettingsT:
    """`settings()` read from the environment, or start-up stops with what is wrong."""
    try:
        return settings()
    except ValidationError as error:
        raise SettingsError(format_validation_error(error)) from None
    except SecretSourceError as error:
        raise SettingsError(f"{_HEADING}\n  {error}") from None
