"""The packages a configured capability needs, checked once at start-up.

The cache, traces, background jobs and authentication are idle code until a setting
turns them on, and their packages are extras of the service (`pyproject.toml`). Turned
on without them, start-up stops with one line naming what to install, instead of an
ImportError at the first request.
"""

import importlib

from .settings import KitSettings

# What each capability imports, by the setting that turns it on and the extra that
# installs it.
CACHE_MODULES = ("redis.asyncio",)
TRACING_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "fastapi.telemetry",
)
# pgqueuer's queue over asyncpg, the driver the service already has.
JOBS_MODULES = ("pgqueuer",)
# The JOSE library that verifies tokens, and the HTTP client that fetches the keys.
OIDC_MODULES = ("joserfc", "httpx")
# The driver of each backend, as DATABASE_URL names it.
DRIVER_MODULES = {"postgresql": "asyncpg", "mysql": "asyncmy", "sqlite": "aiosqlite"}


class MissingPackages(SystemExit):
    """Stops start-up with one line: what is configured, and what to install for it."""


def require_extras(settings: KitSettings) -> None:
    """Stop start-up when a configured capability's packages are not installed."""
    if settings.redis_url is not None:
        _require("REDIS_URL is set", CACHE_MODULES, _extra("cache"))
    if settings.tracing_enabled:
        _require("TRACING_ENABLED is on", TRACING_MODULES, _extra("tracing"))
    if settings.jobs_enabled:
        _require("JOBS_ENABLED is on", JOBS_MODULES, _extra("jobs"))
    if settings.auth == "oidc":
        _require("AUTH=oidc", OIDC_MODULES, _extra("auth"))
    driver = DRIVER_MODULES[settings.backend]
    _require(f"DATABASE_URL is a {settings.backend} URL", (driver,), f"pip install {driver}")


def _extra(name: str) -> str:
    return f"the service's `{name}` extra: uv sync --extra {name}, or pip install '.[{name}]'"


def _require(configured: str, modules: tuple[str, ...], install: str) -> None:
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingPackages(
                f"{configured}, but {module} is missing; install {install}"
            ) from None
