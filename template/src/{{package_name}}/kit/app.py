"""The app as the kit builds it for `main.py`, which names the service and adds its routers.

What every service has, the same in each, is set up here:

- at start-up (the lifespan): the database (its replicas with DB_REPLICA_URLS), the
  cache with REDIS_URL, the migrations with MIGRATE_ON_STARTUP, the schema's head for
  readiness, traces with TRACING_ENABLED, and `/metrics` (on its own port with
  METRICS_PORT); all of it closed again at shutdown;
- on each request, outermost first: the response headers every response carries
  (`SecurityHeaders`), the client from X-Forwarded-For (and the request id kept) when a
  proxy TRUSTED_PROXIES names sent the request, CORS for the origins CORS_ORIGINS names,
  the consistency token (with replicas), the request figures, the request id (and the id
  on the trace's span), the body's size limit and read deadline, and the sessions'
  closing once the route is done;
- the authenticator AUTH names (`app.state.authenticator`, kit/auth/), which the
  routes' `CurrentPrincipal` and `require(...)` ask;
- problem details for every error, the OpenAPI document completed, the health routes.

A service adds its own start-up and shutdown as `build_app(..., lifespan=...)`: an async
context manager taking the app, entered once the kit's start-up is done (the database
is `app.state.db`) and left before the kit's shutdown. Its own middleware it adds to the
app `build_app` returns, with `app.add_middleware(...)`: added last, it runs first on
each request, outside the kit's. The README says what the HTTP settings guard.
"""

import gc
import logging
from collections.abc import AsyncIterator
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from contextlib import asynccontextmanager
from contextlib import nullcontext

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from .auth.setup import build_authenticator
from .auth.setup import close_authenticator
from .cache import CACHE
from .cache import open_cache
from .errors import DatabaseMisconfigured
from .extras import require_extras
from .http import health
from .http.dependencies import CloseSessionsMiddleware
from .http.dependencies import read_session
from .http.dependencies import write_session
from .http.metrics import install_metrics
from .http.metrics import serving_metrics
from .http.middleware import BodyLimitMiddleware
from .http.middleware import QuietStartupFailure
from .http.middleware import RequestIdMiddleware
from .http.openapi import complete_openapi
from .http.openapi import operation_id
from .http.problems import install_problem_handlers
from .http.proxies import TrustedPeer
from .http.routes import App
from .jobs.metrics import report_queue
from .jobs.metrics import stop_reporting_queue
from .migrations.startup import alembic_config
from .migrations.startup import schema_head
from .migrations.startup import upgrade_on_startup
from .observability.logging import configure_logging
from .observability.tracing import RequestIdOnSpan
from .observability.tracing import start_tracing
from .observability.tracing import telemetry
from .replicas.consistency import ConsistencyTokenMiddleware
from .replicas.consistency import document_consistency_token
from .replicas.replicas import open_database
from .settings import Settings
from .settings import SettingsError
from .settings import secret_values

log = logging.getLogger(__name__)

# What a page of an origin CORS_ORIGINS names may send, and read of the answer.
_CORS_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
_CORS_EXPOSED = ["X-Request-ID", "X-Consistency-Token", "Location", "Retry-After"]
# A lifespan as FastAPI takes it: the app in, an async context manager out.
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def build_app(
    settings: Settings,
    *,
    title: str,
    description: str = "",
    version: str = "0.1.0",
    lifespan: Lifespan | None = None,
) -> App:
    """The service's app, without its own routes: add them with `app.include_router`."""
    require_extras(settings)  # a capability turned on without its packages: one line
    configure_logging(settings.log_level, settings.log_format, secret_values(settings))
    app = App(
        title=title,
        description=description,
        version=version,
        lifespan=_lifespan(lifespan),
        generate_unique_id_function=operation_id,  # `create_project`, not FastAPI's long id
        telemetry=telemetry(settings),  # FastAPI's own server span, with traces
    )
    app.state.settings = settings
    # Who calls (kit/auth/): None with AUTH=none, every caller then being anonymous.
    app.state.authenticator = build_authenticator(settings, lambda: app.state.db.write_session())
    if settings.auth == "password":  # the service's own users: /auth/register, /auth/token...
        from .auth.password import password_router

        app.include_router(password_router(settings))
    # Each middleware added wraps those added before it.
    app.add_middleware(CloseSessionsMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        read_timeout=settings.body_read_timeout,
    )
    if settings.tracing_enabled:
        app.add_middleware(RequestIdOnSpan)
    app.add_middleware(RequestIdMiddleware)
    install_metrics(app, settings)  # outside the request id: it counts that one's 500s too
    app.add_middleware(QuietStartupFailure)
    complete_openapi(app, settings)
    document_consistency_token(app, read_session, write_session)
    if settings.db_replica_urls:  # a write's response carries its X-Consistency-Token
        app.add_middleware(ConsistencyTokenMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=settings.cors_allow_credentials,
            allow_methods=_CORS_METHODS,
            allow_headers=["*"],  # whatever the preflight asks: the origin is what is checked
            expose_headers=_CORS_EXPOSED,
        )
    if settings.trusted_proxies:
        # uvicorn's proxy headers, run by the app: the Dockerfile starts uvicorn with
        # --no-proxy-headers, so that this setting alone decides whom to believe (for
        # the client's address, its scheme and the request id).
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
        app.add_middleware(TrustedPeer, proxies=settings.trusted_proxies)
    install_problem_handlers(app)
    app.include_router(health.router)
    return app


def _lifespan(own: Lifespan | None) -> Lifespan:
    """The kit's start-up and shutdown around the service's own (`own`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings: Settings = app.state.settings
        async with opened(app, settings), (own or _nothing)(app):
            # What start-up built lives as long as the process. Out of the garbage
            # collector's reach, it is not walked again by every full collection, which
            # under pages of parents with their children came several times a second.
            gc.freeze()
            async with serving_metrics(settings):
                yield

    return lifespan


def _nothing(_app: FastAPI) -> AbstractAsyncContextManager[None]:
    return nullcontext()


@asynccontextmanager
async def opened(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    """The database, the cache, the schema and traces, in `app.state`, until shutdown."""
    missing = settings.missing_for_auth()  # AUTH=oidc without its provider
    if missing is not None:
        log.error("cannot start: %s", missing)
        raise SettingsError(missing)
    db = open_database(settings)  # with DB_REPLICA_URLS, reads go to the replicas
    try:
        await db.connect()
    except (DatabaseMisconfigured, SettingsError) as error:
        log.error("cannot start: %s", error)
        raise
    app.state.db = db
    # The cache, if configured (kit/cache/); opens no connection, so a cache server down
    # at start-up makes a degraded cache, not a failed start.
    app.state.cache = db.session_info[CACHE] = open_cache(settings)
    try:
        config = alembic_config(settings.alembic_config)
        # Only a server database can be migrated by the service as it starts: the settings
        # refuse MIGRATE_ON_STARTUP when DATABASE_URL is a SQLite file.
        if settings.migrate_on_startup:
            await upgrade_on_startup(settings, config)
        has_migrations = settings.alembic_config.exists()
        app.state.schema_head = schema_head(config) if has_migrations else None
        if app.state.schema_head is None:
            log.warning("no %s: readiness will not check the schema", settings.alembic_config)
        start_tracing(settings)  # with TRACING_ENABLED (kit/observability/tracing.py)
        if settings.jobs_enabled:  # the queue's figures on /metrics (kit/jobs/metrics.py)
            report_queue(db)
        yield
    finally:
        stop_reporting_queue(db)
        await close_authenticator(getattr(app.state, "authenticator", None))
        await db.disconnect()
        if app.state.cache is not None:
            await app.state.cache.close()
