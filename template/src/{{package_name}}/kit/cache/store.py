"""`Cache`: the process's Redis client, and the only code that talks to Redis.

Entries are Redis hashes: `v` holds the JSON body, `t` the lease a reader took when it
missed. A reader that misses takes a lease (or shares the one another process took),
reads the database, and stores its body only if the lease is still there; a write drops
the whole hash after its commit. So a read that raced a write, and read the row before
the write committed, finds its lease gone and stores nothing: it cannot put the old row
back, however long it was paused. (A version-checked set would need a version on every
row and a tombstone to compare it with; the lease needs neither.)

Redis is never a reason to fail a request: an error or a timeout (`CACHE_TIMEOUT`) is
counted, the request reads the database, and reads leave Redis alone for
`CACHE_RETRY_SECONDS`. Drops are always tried; a drop that failed is tried again before
this process reads from Redis again.
"""

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable
from collections.abc import Callable
from collections.abc import Iterable
from dataclasses import asdict
from dataclasses import dataclass
from typing import Any
from typing import Literal

from prometheus_client import Counter
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..settings import KitSettings

log = logging.getLogger(__name__)

# Milliseconds a reader's lease lives: longer than any read it covers. One that expires
# costs nothing but the entry: the late reader's body is refused.
LEASE_MS = 30_000

# Returns [1, body] on a hit, [0, lease] on a miss (a new lease, or another reader's).
_LEASE = """
local body = redis.call('HGET', KEYS[1], 'v')
if body then return {1, body} end
local lease = redis.call('HGET', KEYS[1], 't')
if not lease then
  lease = ARGV[1]
  redis.call('HSET', KEYS[1], 't', lease)
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return {0, lease}
"""
# Stores the body only under the lease it was read under; 1 if stored, 0 if a write
# dropped the entry since (or another lease replaced it).
_FILL = """
if redis.call('HGET', KEYS[1], 't') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


CACHE_EVENTS = Counter(
    "cache_events",
    "Cache outcomes, named as in CacheCounters (errors, bypassed: the database answered)",
    ["event"],
)


@dataclass
class CacheCounters:
    """Since start-up. `errors` and `bypassed` count requests Redis did not serve."""

    hits: int = 0
    misses: int = 0
    # Misses that waited for the same key's query in this process instead of running one.
    coalesced: int = 0
    fills: int = 0
    # Bodies not stored because a write dropped the entry while they were read.
    fills_refused: int = 0
    # Entries dropped after commits.
    invalidations: int = 0
    # Redis failed or timed out: the request read the database.
    errors: int = 0
    # Reads that did not ask Redis because it had just failed.
    bypassed: int = 0
    # Drops that failed; each is tried again before this process reads from Redis.
    invalidation_errors: int = 0

    def count(self, event: str, n: int = 1) -> None:
        """Add `n` to the field named `event`, and to `/metrics`' `cache_events_total`."""
        setattr(self, event, getattr(self, event) + n)
        CACHE_EVENTS.labels(event).inc(n)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class Cache:
    """One per process (created in the lifespan); every method is safe to call when Redis
    is down: none raises a Redis error."""

    def __init__(self, settings: KitSettings) -> None:
        if settings.redis_url is None:
            raise ValueError("no REDIS_URL: the service has no cache (kit.cache.open_cache)")
        self.prefix = f"{settings.cache_key_prefix}:"
        self.ttl_ms = int(settings.cache_ttl_seconds * 1000)
        self.retry_seconds = settings.cache_retry_seconds
        self.counters = CacheCounters()
        # No retries: a failing Redis costs one timeout, then the database answers.
        self.redis = Redis.from_url(
            settings.redis_url.get_secret_value(),
            socket_timeout=settings.cache_timeout,
            socket_connect_timeout=settings.cache_timeout,
            retry=Retry(NoBackoff(), 0),
            client_name=f"{settings.cache_key_prefix}-cache",  # in CLIENT LIST
        )
        self._lease = self.redis.register_script(_LEASE)
        self._fill = self.redis.register_script(_FILL)
        self._failed_at = float("-inf")
        self._undropped: set[str] = set()
        # Single flight: the query under way for a key, which concurrent misses await.
        self._flights: dict[str, asyncio.Future[bytes]] = {}

    async def read(self, key: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        """The body under `key`, or `load()`'s (stored for the next reader). Concurrent
        calls for one key in this process run `load` once; its error reaches them all."""
        while (flight := self._flights.get(key)) is not None:
            self.counters.count("coalesced")
            await asyncio.wait([flight])  # our own cancellation propagates, not the leader's
            if not flight.cancelled():
                return flight.result()
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            body = await self._through(self.prefix + key, load)
        except Exception as error:
            future.set_exception(error)
            future.exception()  # retrieved: no "never retrieved" warning without followers
            raise
        except BaseException:
            future.cancel()  # followers run the query themselves
            raise
        else:
            future.set_result(body)
            return body
        finally:
            if self._flights.get(key) is future:
                del self._flights[key]

    async def _through(self, key: str, load: Callable[[], Awaitable[bytes]]) -> bytes:
        if not await self._usable():
            self.counters.count("bypassed")
            return await load()
        lease = secrets.token_hex(8)
        found = await self._call(self._lease(keys=[key], args=[lease, LEASE_MS]))
        if found is None:
            return await load()
        hit, value = found
        if hit:
            self.counters.count("hits")
            return bytes(value)
        self.counters.count("misses")
        body = await load()
        stored = await self._call(self._fill(keys=[key], args=[value, body, self.ttl_ms]))
        if stored == 1:
            self.counters.count("fills")
        elif stored == 0:
            self.counters.count("fills_refused")
        return body

    async def invalidate(self, keys: Iterable[str]) -> None:
        """Drop the entries under `keys`, and forget queries under way for them: a read
        that starts after this returns reads the database."""
        full = set()
        for key in keys:
            self._flights.pop(key, None)
            full.add(self.prefix + key)
        if full:
            await self._drop(full)

    async def _drop(self, keys: set[str]) -> bool:
        # DEL is allowed even when Redis is out of memory.
        dropped = await self._call(self.redis.delete(*keys))
        if dropped is None:
            self.counters.count("invalidation_errors", len(keys - self._undropped))
            self._undropped |= keys
            log.warning("cache: %d entries could not be dropped; retrying before reads", len(keys))
            return False
        self.counters.count("invalidations", len(keys))
        self._undropped -= keys
        return True

    async def _usable(self) -> bool:
        """Whether reads may ask Redis now: it has not just failed, and every drop that
        failed has since gone through."""
        if time.monotonic() - self._failed_at < self.retry_seconds:
            return False
        return not self._undropped or await self._drop(set(self._undropped))

    async def _call(self, command: Awaitable[Any]) -> Any:
        """`command`'s reply, or None when Redis failed (counted, and reads pause)."""
        try:
            return await command
        except (RedisError, OSError) as error:
            self.counters.count("errors")
            self._failed_at = time.monotonic()
            log.warning("cache unavailable (%s): reading the database", type(error).__name__)
            return None

    async def check(self) -> Literal["ok", "degraded"]:
        """For readiness: "degraded" while Redis fails; the service still serves."""
        if not await self._usable():
            return "degraded"
        return "ok" if await self._call(self.redis.ping()) else "degraded"

    async def clear(self) -> int:
        """Drop every entry of this service (its key prefix), for an operator after a
        change made behind the service's back (SQL in a console); how many there were.
        Unlike the rest, it raises when Redis cannot be reached."""
        dropped = 0
        async for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            dropped += int(await self.redis.delete(key))
        return dropped

    async def close(self) -> None:
        await self.redis.aclose()
