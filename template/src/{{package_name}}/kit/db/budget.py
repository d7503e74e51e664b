"""The connection budget: what a worker's pools may open, against the limits that apply.

Checked once at start-up (`engine.py`, on the direct connection), so a deployment whose
workers and pods cannot all connect is refused before it meets the limit under load.
"""

import logging

from sqlalchemy.ext.asyncio import AsyncConnection

from ..settings import Settings
from ..settings import SettingsError
from .dialect import max_connections
from .dialect import pooler_limit

log = logging.getLogger(__name__)


async def check_budget(conn: AsyncConnection, settings: Settings) -> None:
    """Log this worker's connections against the limits that apply, and refuse a
    budget that cannot fit in production.

    Directly: pools x workers per pod x pods, and each jobs worker pod's pools and queue
    connection, plus a reserve, within the server's max_connections. Behind a pooler the
    pools are the pooler's clients: they count against its client limit (when the
    settings give it), and only the direct connections, one a worker at start-up and
    the queue's of each jobs worker pod, against the server's.
    """
    s = settings
    per_worker = s.db_pool_size + s.db_write_pool_size + 2 * s.db_max_overflow + 1
    log.info(
        "database %s connected; at most %d connections per worker "
        "(reads %d + writes %d, overflow %d each, 1 for readiness)",
        s.database_url,
        per_worker,
        s.db_pool_size,
        s.db_write_pool_size,
        s.db_max_overflow,
    )
    server = await max_connections(conn, s)
    pooler = pooler_limit(s)
    # A jobs worker pod is one process with the same pools, and the queue's connection,
    # which goes to the server itself.
    jobs = s.jobs_worker_pods
    workers = s.web_concurrency * s.db_pods + jobs
    budget = per_worker * workers
    pools = (
        f"{per_worker} per worker x {s.web_concurrency} workers (WEB_CONCURRENCY) x "
        f"{s.db_pods} pods (DB_PODS)"
    )
    if jobs:
        pools += f" + {jobs} jobs worker pods (JOBS_WORKER_PODS) x {per_worker + 1}"
    pools += f" = {budget + jobs}"
    too_many: list[str] = []
    if pooler is None:
        if server is None:
            return
        log.info(
            "connection budget: %s of the server's %d (%d kept in reserve)",
            pools,
            server,
            s.db_connection_reserve,
        )
        if budget + jobs > server - s.db_connection_reserve:
            too_many.append(
                f"the connection budget ({budget + jobs}) exceeds the server's "
                f"max_connections ({server}) less DB_CONNECTION_RESERVE "
                f"({s.db_connection_reserve}): lower DB_POOL_SIZE, DB_WRITE_POOL_SIZE, "
                "DB_MAX_OVERFLOW, WEB_CONCURRENCY, DB_PODS or JOBS_WORKER_PODS, or raise "
                "the server's max_connections"
            )
    else:
        setting, limit = pooler
        judged = (
            f"of PgBouncer's {limit} ({setting})"
            if limit is not None
            else f"(PgBouncer's client limit is not checked: set {setting})"
        )
        direct = workers + jobs
        log.info(
            "connection budget behind PgBouncer: pools %s client connections %s; "
            "%d direct connections (1 per worker, DATABASE_DIRECT_URL) of the server's "
            "%s (%d kept in reserve)",
            pools,
            judged,
            direct,
            server,
            s.db_connection_reserve,
        )
        if limit is not None and budget > limit:
            too_many.append(
                f"the connection budget ({budget}) exceeds PgBouncer's max_client_conn "
                f"({setting}={limit}): lower DB_POOL_SIZE, DB_WRITE_POOL_SIZE, "
                "DB_MAX_OVERFLOW, WEB_CONCURRENCY, DB_PODS or JOBS_WORKER_PODS, or raise "
                f"max_client_conn in PgBouncer and {setting}"
            )
        if server is not None and direct > server - s.db_connection_reserve:
            too_many.append(
                f"the {direct} direct connections (1 per worker) exceed the server's "
                f"max_connections ({server}) less DB_CONNECTION_RESERVE "
                f"({s.db_connection_reserve}): lower WEB_CONCURRENCY, DB_PODS or "
                "JOBS_WORKER_PODS, or raise the server's max_connections"
            )
    for message in too_many:
        if s.environment == "production":
            raise SettingsError(message)
        log.warning(message)
