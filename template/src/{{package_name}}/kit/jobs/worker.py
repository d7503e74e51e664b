"""The worker command: `<package>-worker` (the service's `worker.py` calls `main`).

It reads the service's settings, as the app does, and runs the service's jobs until
SIGTERM or SIGINT (runner.py). On another backend than PostgreSQL, or without the
`jobs` extra, it stops at once with one line saying why.
"""

import asyncio
import logging
import signal

from ..extras import require_extras
from ..observability.logging import configure_logging
from ..settings import KitSettings
from ..settings import load_settings
from .registry import Jobs

log = logging.getLogger(__name__)


class WorkerRefused(SystemExit):
    """Stops the worker before it starts, with one line saying why."""


def main(settings_class: type[KitSettings], jobs: Jobs) -> None:
    """Run `jobs` with the settings the environment gives `settings_class`."""
    settings = load_settings(settings_class)
    configure_logging(settings.log_level, settings.log_format)
    if settings.backend != "postgresql":
        raise WorkerRefused(
            f"the jobs worker needs PostgreSQL, and DATABASE_URL is a {settings.backend} "
            "URL: background jobs are a PostgreSQL queue"
        )
    require_extras(settings.model_copy(update={"jobs_enabled": True}))
    asyncio.run(run(settings, jobs))


async def run(settings: KitSettings, jobs: Jobs) -> None:
    """`serve` until the process is told to stop."""
    from .runner import serve  # pgqueuer: only once the extra is known to be there

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(settings, jobs, stop)
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
