"""Every Prometheus metric the service exposes, defined once, and how a scrape reads them.

The figures are counted in each worker process. With one process, a scrape reads them
from prometheus-client's default registry. With several (`uvicorn --workers`), set
`PROMETHEUS_MULTIPROC_DIR` to an empty directory the workers share before they start:
each then writes its figures to files there (prometheus-client's multiprocess mode,
chosen when the library is imported) and a scrape of any worker adds up all of them.
Gauges of a worker that stopped are dropped at its shutdown (`forget_this_process`).

Some gauges are a state rather than a count of events: the connection pools'. Nothing
touches them while the service works; a scrape first runs the refreshes registered with
`refresh_at_scrape`, which read the state and set them. A worker cannot read another's
state, so under several workers each also refreshes its own every `REFRESH_SECONDS`
(`keep_refreshing`, in the app's lifespan): a scrape sees the other workers' figures at
most that old.

Other gauges are a server's state, read with a query: the job queue's. A scrape awaits
those reads (`read_at_scrape`) first; one answered by METRICS_PORT's server, in its own
thread, runs them on the app's loop (`read_on`).
"""

import asyncio
import logging
import os
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from functools import cache

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client import REGISTRY
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Gauge
from prometheus_client import Histogram
from prometheus_client import generate_latest
from prometheus_client import multiprocess
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR")

# Requests. The histogram's `_count` is the request count: no counter repeats it.
REQUEST_SECONDS = Histogram(
    "http_request_duration_seconds",
    "Time from a request's arrival to its last response byte, by route template and status class",
    ["method", "route", "status"],
)
IN_FLIGHT = Gauge(
    "http_requests_in_flight", "Requests being served right now", multiprocess_mode="livesum"
)
PROBLEMS = Counter(
    "http_problems",
    "Error responses (kit/http/problems.py) by problem type and status",
    ["type", "status"],
)

# Connection pools, by pool: `write`, `read`, `probe` (readiness), `replica`. The gauges
# are read from the pools at each scrape (`kit/db/metrics.py`).
POOL_SIZE = Gauge(
    "db_pool_size", "Connections a pool keeps open", ["pool"], multiprocess_mode="livesum"
)
POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out", "Connections in use", ["pool"], multiprocess_mode="livesum"
)
POOL_IDLE = Gauge(
    "db_pool_idle",
    "Connections open in a pool, waiting to be used",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_OVERFLOW = Gauge(
    "db_pool_overflow",
    "Connections open beyond the pool size (DB_MAX_OVERFLOW)",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_WAITING = Gauge(
    "db_pool_waiting",
    "Callers waiting for a connection (or for a new one to open)",
    ["pool"],
    multiprocess_mode="livesum",
)
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
POOL_WAIT_SECONDS = Histogram(
    "db_pool_checkout_wait_seconds",
    "Time to get a connection from a pool (DB_POOL_TIMEOUT ends it with a 503)",
    ["pool"],
    buckets=_FAST,
)

# Statements and retries.
STATEMENT_SECONDS = Histogram(
    "db_statement_duration_seconds",
    "Time a statement took on the database",
    ["pool"],
    buckets=_FAST,
)
RETRIES = Counter(
    "db_retries",
    "Statements and units of work run again (kind: deadlock_or_serialization, lost_connection)",
    ["kind", "session"],
)

# Background jobs (`kit/jobs/`). The queue's state is read from its table at each
# scrape (`kit/jobs/metrics.py`): the same figure in every process, so the most recent
# one is reported. Runs are counted by the jobs worker as they end, by outcome:
# succeeded, retried (failed, to run again after its backoff), failed (its last retry:
# kept as failed), released (cancelled by a stopping worker, to run elsewhere).
JOBS_QUEUE_DEPTH = Gauge(
    "jobs_queue_depth",
    "Jobs in the queue by job name and status (queued, picked, failed)",
    ["job", "status"],
    multiprocess_mode="mostrecent",
)
JOBS_OLDEST_READY = Gauge(
    "jobs_oldest_ready_seconds",
    "Age of the oldest queued job that is ready to run (not waiting for a retry's backoff)",
    ["job"],
    multiprocess_mode="mostrecent",
)
JOBS_RUNS = Counter("jobs_runs", "Runs of jobs by job name and outcome", ["job", "outcome"])


# Under several workers: how often each sets its state gauges for the others' scrapes.
REFRESH_SECONDS = 1.0

_refreshes: list[Callable[[], None]] = []
_reads: list[Callable[[], Awaitable[None]]] = []
# Seconds a scrape waits for the reads (`read_at_scrape`) before it answers without them.
READ_SECONDS = 2.0


def refresh_at_scrape(refresh: Callable[[], None]) -> None:
    """Run `refresh` (which sets state gauges) before every scrape reads the figures."""
    _refreshes.append(refresh)


def read_at_scrape(read: Callable[[], Awaitable[None]]) -> None:
    """Await `read` (which sets state gauges from a server, such as the job queue's
    depth) before every scrape of `/metrics` and of the jobs worker reads the figures."""
    _reads.append(read)


async def read() -> None:
    """Run the reads: one that fails or takes longer than READ_SECONDS leaves its gauges
    as they were, with a warning, and the scrape answers with what it has."""
    for each in _reads:
        try:
            async with asyncio.timeout(READ_SECONDS):
                await each()
        except Exception as error:  # a scrape answers with what it has
            log.warning("a figure was not read for this scrape: %s", error)


async def scrape() -> tuple[bytes, str]:
    """`exposition()` after the reads."""
    await read()
    return exposition()


# The loop the reads run on for a scrape answered in another thread (METRICS_PORT's
# server): the app's, set by `read_on`.
_loop: asyncio.AbstractEventLoop | None = None


def read_on(loop: asyncio.AbstractEventLoop | None) -> None:
    """Scrapes answered outside `loop` (in METRICS_PORT's thread) run the reads on it;
    None: they do not run the reads."""
    global _loop  # the one loop of the process, set at start-up
    _loop = loop


def _read_from_another_thread() -> None:
    loop = _loop
    if not _reads or loop is None or loop.is_closed():
        return
    try:
        asyncio.get_running_loop()
        return  # on a loop: `scrape()` ran the reads already
    except RuntimeError:
        pass
    future = asyncio.run_coroutine_threadsafe(read(), loop)
    try:
        future.result(timeout=READ_SECONDS * (len(_reads) + 1))
    except Exception as error:  # the loop is stopping, or too busy: answer without
        future.cancel()
        log.warning("the figures were not read for this scrape: %s", error)


def refresh() -> None:
    for each in _refreshes:
        each()


class _Refresh(Collector):
    """The first collector of a scrape's registry: it sets the state gauges and yields
    nothing, so the collectors after it read them as they are now."""

    def collect(self) -> Iterable[Metric]:
        _read_from_another_thread()
        refresh()
        return ()


@cache
def registry() -> CollectorRegistry:
    """What a scrape reads: this process's figures, or every worker's in multiprocess
    mode, with the state gauges refreshed first (a registry collects in the order its
    collectors were registered)."""
    scraped = CollectorRegistry()
    scraped.register(_Refresh())
    if MULTIPROCESS_DIR is None:
        scraped.register(REGISTRY)
    else:
        # Reads the workers' files at each scrape (prometheus-client leaves it unannotated).
        multiprocess.MultiProcessCollector(scraped)  # type: ignore[no-untyped-call]
    return scraped


async def keep_refreshing() -> None:
    """Set this worker's state gauges every `REFRESH_SECONDS` until cancelled: under
    several workers, for the scrapes the others answer."""
    while True:
        refresh()
        await asyncio.sleep(REFRESH_SECONDS)


def exposition() -> tuple[bytes, str]:
    """The current figures in Prometheus' text format, and its content type."""
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def forget_this_process() -> None:
    """In multiprocess mode, drop this worker's gauges: it is shutting down."""
    if MULTIPROCESS_DIR is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
