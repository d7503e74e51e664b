"""The database's settings: where it is, the pools, timeouts, replicas and migrations.

One set for every backend. What only one backend has is checked against DATABASE_URL's
backend when the settings are read: set for another, it stops start-up with the reason.
"""

from pathlib import Path
from typing import Any

from pydantic import Field
from pydantic import ValidationInfo
from pydantic import field_validator
from pydantic import model_validator
from pydantic_settings import BaseSettings
from sqlalchemy.engine import URL

from .urls import DatabaseURL
from .urls import ReplicaURLs
from .urls import ServerURL

# Settings only some backends have, the backends, and why another refuses them: ignored,
# they would look as if they worked.
_ONLY_ON: dict[str, tuple[frozenset[str], str]] = {
    "db_replica_urls": (
        frozenset({"postgresql"}),
        "read replicas are built for PostgreSQL only; remove it (every read goes to DATABASE_URL)",
    ),
    "db_behind_pgbouncer": (
        frozenset({"postgresql"}),
        "PgBouncer pools PostgreSQL connections only; remove it",
    ),
    "db_pgbouncer_max_client_conn": (
        frozenset({"postgresql"}),
        "PgBouncer pools PostgreSQL connections only; remove it",
    ),
    "database_direct_url": (
        frozenset({"postgresql", "mysql"}),
        "a SQLite file has no server to reach past a pooler; remove it",
    ),
    "database_owner_url": (
        frozenset({"postgresql", "mysql"}),
        "a SQLite file has no roles: whoever may open it may change its schema; remove it",
    ),
    "migrate_on_startup": (
        frozenset({"postgresql", "mysql"}),
        "one process owns a SQLite file, so there is no start-up migration; run "
        "`alembic upgrade head` before starting the service",
    ),
}


class DatabaseSettings(BaseSettings):
    """The database's part of `KitSettings`; the comment says when to change each."""

    # Where the data lives. Its password never reaches a log: URL hides it when printed.
    # PostgreSQL, MariaDB/MySQL or SQLite, whichever the URL names.
    database_url: DatabaseURL
    # The database server itself, as DATABASE_URL's role, when DATABASE_URL goes through a
    # connection pooler: the start-up checks (and, with one role, migrations and their
    # lock) need a session of their own. Without a database name, DATABASE_URL's. Unset:
    # the same as DATABASE_URL. Not for SQLite.
    database_direct_url: ServerURL | None = None
    # The role that owns the tables and runs migrations (`alembic upgrade head`, the
    # start-up migration), while DATABASE_URL's role only reads and writes rows (README,
    # "Database roles"). It reaches the server itself, never through a pooler. Without a
    # database name, DATABASE_URL's. Unset: migrations run as DATABASE_URL's role (one
    # role, for development). Not for SQLite.
    database_owner_url: ServerURL | None = None
    # PostgreSQL: DATABASE_URL leads to PgBouncer in transaction mode: no statement is
    # prepared for reuse, the timeouts are this database's settings (set by migrations)
    # instead of start-up parameters, and reads run in READ ONLY transactions.
    # Needs DATABASE_DIRECT_URL: migrations and their lock need a session of their own.
    db_behind_pgbouncer: bool = False
    # Behind PgBouncer: its max_client_conn, which the pools of every worker of every pod
    # share. The connection budget is checked against it, and only the direct connections
    # (one a worker at start-up) against the server's max_connections. Unset: not checked.
    db_pgbouncer_max_client_conn: int | None = Field(default=None, ge=1)
    # PostgreSQL: streaming replicas of DATABASE_URL's database that serve reads,
    # comma-separated (empty: the primary serves every read). README, "Read replicas".
    db_replica_urls: ReplicaURLs = []
    # Connections kept open per worker process to each replica.
    db_replica_pool_size: int = Field(default=10, ge=1, le=500)
    # Seconds a replica may lag behind the primary before it stops serving reads.
    db_replica_max_lag: float = Field(default=5.0, gt=0)
    # Milliseconds a replica's replay position is trusted before it is asked again:
    # raise it if replicas see too many checks, lower it if token reads fall back to the
    # primary while the replicas are in fact current.
    db_replica_position_ms: int = Field(default=20, ge=1, le=60_000)
    # Seconds before a replica out of rotation (unreachable, too far behind) is tried again.
    db_replica_retry_seconds: float = Field(default=5.0, gt=0, le=3600)
    # Read-only connections kept open per worker process, for GET requests: match
    # it to the reads a worker serves at once. Connections over a pool (overflow) are
    # closed as soon as they are returned, so a pool smaller than the steady concurrency
    # keeps opening new ones.
    db_pool_size: int = Field(default=30, ge=1, le=500)
    # Read-write connections kept open per worker process, for the other requests. A
    # write holds its connection only for its unit of work.
    db_write_pool_size: int = Field(default=10, ge=1, le=500)
    # Extra connections allowed above each pool for bursts; 0 keeps the ceiling exact.
    db_max_overflow: int = Field(default=0, ge=0, le=500)
    # Seconds a request waits for a free connection before it gets a 503. Keep it short.
    db_pool_timeout: float = Field(default=5.0, gt=0, le=120)
    # Test each connection on checkout (one to three round trips per request). Off: a
    # connection the server dropped fails its first statement, the pool discards it and
    # every older one, and the read statement or the unit of work runs again on a new one.
    # A SQLite file cannot drop a connection.
    db_pool_pre_ping: bool = False
    # SQLite: seconds a writer waits for another writer to finish before giving up.
    db_busy_timeout: float = Field(default=5.0, gt=0, le=120)
    # Seconds after which a connection is replaced: keep it below the idle cut-off of
    # every NAT gateway, load balancer or proxy on the way to the server (some drop idle
    # connections after 4 minutes without telling either end).
    db_pool_recycle: int = Field(default=180, ge=-1)
    # Seconds to wait for a new connection to the server.
    db_connect_timeout: float = Field(default=5.0, gt=0, le=120)
    # The connection budget: worker processes per pod (uvicorn's own WEB_CONCURRENCY) and
    # pods of this service. At start-up the service compares pools x workers x pods with
    # the server's max_connections less this reserve (for migrations, consoles, other
    # services); in production a budget that does not fit stops start-up.
    web_concurrency: int = Field(default=1, ge=1, le=256)
    db_pods: int = Field(default=1, ge=1, le=10_000)
    db_connection_reserve: int = Field(default=10, ge=0)
    # Attempts at start-up before giving up, with exponential backoff from this many seconds.
    db_connect_attempts: int = Field(default=5, ge=1, le=100)
    db_connect_backoff: float = Field(default=0.5, gt=0, le=60)
    # Server-side cap on any single statement, in milliseconds (0 disables).
    db_statement_timeout_ms: int = Field(default=30_000, ge=0)
    # The server ends sessions idle inside a transaction this long, in milliseconds (0
    # disables); MariaDB rounds it up to seconds, MySQL and SQLite have no such setting.
    db_idle_in_transaction_timeout_ms: int = Field(default=60_000, ge=0)
    # PostgreSQL: the name shown in pg_stat_activity; set it per deployment to tell
    # replicas apart. Unset: SERVICE_NAME.
    db_application_name: str = Field(default="service", min_length=1, max_length=63)
    # Log every statement (debugging only: it is loud and slow).
    db_echo: bool = False
    # Statements slower than this are logged at WARNING, in milliseconds (0 disables).
    db_slow_query_ms: int = Field(default=500, ge=0)
    # Retries of a unit of work that hit a deadlock or serialization failure.
    db_retry_attempts: int = Field(default=3, ge=1, le=20)
    # Run `alembic upgrade head` at start-up under an advisory lock (one replica migrates).
    # Off by default: migrating is a deployment step of its own (see the README).
    migrate_on_startup: bool = False
    # How long a migration's statements (`alembic upgrade head`, or at start-up) wait for
    # a table lock, in milliseconds, before failing, so that queries on the table do not
    # queue behind them (they have no statement timeout: a long migration must finish).
    db_migration_lock_timeout_ms: int = Field(default=10_000, ge=0)
    # Runs of a migration that failed that way, in all: each rolls back, pauses (the lock
    # timeout, doubled each time) and starts again.
    db_migration_attempts: int = Field(default=3, ge=1, le=100)
    # The Alembic configuration, relative to the working directory (Alembic's own variable).
    alembic_config: Path = Path("alembic.ini")

    @property
    def backend(self) -> str:
        """`postgresql`, `mysql` or `sqlite`: DATABASE_URL's dialect."""
        return self.database_url.get_backend_name()

    @property
    def direct_url(self) -> URL:
        """The service's own role on the server itself, past any pooler."""
        return self._in_our_database(self.database_direct_url) or self.database_url

    @property
    def migration_url(self) -> URL:
        """Where migrations run: as the owner when DATABASE_OWNER_URL names one, on the
        server itself, past any pooler."""
        return self._in_our_database(self.database_owner_url) or self.direct_url

    def _in_our_database(self, url: URL | None) -> URL | None:
        if url is None or url.database:
            return url
        return url.set(database=self.database_url.database)

    @field_validator(*_ONLY_ON, mode="after")
    @classmethod
    def _only_where_the_backend_has_it(cls, value: Any, info: ValidationInfo) -> Any:
        url = info.data.get("database_url")  # absent when DATABASE_URL itself is invalid
        backends, reason = _ONLY_ON[str(info.field_name)]
        if value and isinstance(url, URL) and url.get_backend_name() not in backends:
            raise ValueError(reason)
        return value

    @model_validator(mode="after")
    def _pgbouncer_needs_a_direct_url(self) -> "DatabaseSettings":
        # Transaction pooling hands each transaction any server connection: session
        # settings would reach other clients' transactions, and the migration lock could
        # stay held by an idle server connection, or be held by two pods at once.
        if self.db_behind_pgbouncer and self.database_direct_url is None:
            raise ValueError(
                "DB_BEHIND_PGBOUNCER=true needs DATABASE_DIRECT_URL: migrations and the "
                "start-up migration lock need a session on the server itself, past PgBouncer"
            )
        return self

    @model_validator(mode="after")
    def _owner_past_pgbouncer(self) -> "DatabaseSettings":
        # A migration holds a session-level lock and settings: transaction pooling would
        # hand them to other clients, or split one migration over several connections.
        owner, pooler = self.database_owner_url, self.database_url
        if (
            self.db_behind_pgbouncer
            and owner is not None
            and (owner.host, owner.port) == (pooler.host, pooler.port)
        ):
            raise ValueError(
                "DATABASE_OWNER_URL leads to PgBouncer (DATABASE_URL's host and port): "
                "migrations need the server itself, as DATABASE_DIRECT_URL names it"
            )
        return self

    @model_validator(mode="after")
    def _replicas_are_the_primarys_kind(self) -> "DatabaseSettings":
        if any(url.get_backend_name() != self.backend for url in self.db_replica_urls):
            raise ValueError("DB_REPLICA_URLS: every replica is a PostgreSQL URL, as DATABASE_URL")
        return self
