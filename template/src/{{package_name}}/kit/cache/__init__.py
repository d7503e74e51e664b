"""The read-through cache in Redis: `Cached` (a service's opt-in, `entries.py`) and
`Cache` (the process's Redis client, `store.py`). README, "Cache", says how to use it.

Idle unless REDIS_URL is set: only then is `store.py`, and Redis with it (the `cache`
extra), imported.
"""

from typing import TYPE_CHECKING

from ..settings import KitSettings

if TYPE_CHECKING:
    from .store import Cache

# The session.info key of the process's cache (`DatabaseManager.session_info`).
CACHE = "cache"


def open_cache(settings: KitSettings) -> "Cache | None":
    """The process's cache when REDIS_URL is set, else None (the database answers every
    read). Opens no connection: Redis down at start-up is a degraded cache, not a failed
    start."""
    if settings.redis_url is None:
        return None
    from .entries import listen
    from .store import Cache

    listen()  # from now on, every unit of work drops the entries it made stale
    return Cache(settings)
