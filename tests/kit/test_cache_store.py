"""`Cache` and `Cached` on the real Redis, without routes: leases, single flight, keys."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime

import pytest
from pydantic import BaseModel
from service.kit.cache.entries import Cached
from service.kit.cache.store import Cache
from service.settings import Settings


def cache_for(settings: Settings, suffix: str) -> Cache:
    """A cache of its own under this run's prefix (conftest removes what is left)."""
    prefix = f"{settings.cache_key_prefix}-{suffix}"
    return Cache(settings.model_copy(update={"cache_key_prefix": prefix}))


@pytest.fixture
async def cache(settings: Settings) -> AsyncIterator[Cache]:
    cache = cache_for(settings, "store")
    yield cache
    await cache.clear()
    await cache.close()


def loader(body: bytes, calls: list[int]) -> Callable[[], Awaitable[bytes]]:
    async def load() -> bytes:
        calls.append(1)
        await asyncio.sleep(0)
        return body

    return load


async def test_a_miss_stores_and_the_next_read_hits(cache: Cache) -> None:
    calls: list[int] = []
    assert await cache.read("k:1", loader(b'{"a":1}', calls)) == b'{"a":1}'
    assert await cache.read("k:1", loader(b'{"a":2}', calls)) == b'{"a":1}'
    assert len(calls) == 1 and (cache.counters.misses, cache.counters.hits) == (1, 1)
    await cache.invalidate(["k:1"])
    assert await cache.read("k:1", loader(b'{"a":2}', calls)) == b'{"a":2}'


async def test_a_body_read_before_a_drop_is_refused(cache: Cache) -> None:
    read, resume = asyncio.Event(), asyncio.Event()

    async def slow_old_row() -> bytes:
        read.set()
        await resume.wait()
        return b"old"

    reader = asyncio.create_task(cache.read("k:2", slow_old_row))
    await read.wait()
    await cache.invalidate(["k:2"])  # a write committed meanwhile
    resume.set()
    assert await reader == b"old"
    assert cache.counters.fills_refused == 1
    assert await cache.read("k:2", loader(b"new", [])) == b"new"


async def test_concurrent_misses_share_one_load_and_its_error(cache: Cache) -> None:
    calls: list[int] = []

    async def failing() -> bytes:
        calls.append(1)
        await asyncio.sleep(0.01)
        raise LookupError("no such row")

    reads = [cache.read("k:3", failing) for _ in range(5)]
    results = await asyncio.gather(*reads, return_exceptions=True)
    assert len(calls) == 1
    assert all(isinstance(result, LookupError) for result in results)
    assert cache.counters.coalesced == 4


async def test_a_cancelled_leader_leaves_its_followers_to_load(cache: Cache) -> None:
    started = asyncio.Event()

    async def never() -> bytes:
        started.set()
        await asyncio.Event().wait()
        return b""

    leader = asyncio.create_task(cache.read("k:4", never))
    await started.wait()
    follower = asyncio.create_task(cache.read("k:4", loader(b"mine", [])))
    await asyncio.sleep(0.01)
    leader.cancel()
    assert await follower == b"mine"
    with pytest.raises(asyncio.CancelledError):
        await leader


class Project(BaseModel):
    id: int
    name: str


def release(*, due_at: bool) -> type[BaseModel]:
    """`Project` as another release of the service spells it."""
    if due_at:

        class Project(BaseModel):
            id: int
            name: str
            due_at: datetime | None

        return Project

    class Project(BaseModel):  # type: ignore[no-redef]
        id: int
        name: str

    return Project


def test_a_schema_change_moves_to_keys_of_its_own() -> None:
    assert Cached(Project).version == Cached(release(due_at=False)).version
    assert Cached(Project).version != Cached(release(due_at=True)).version
    assert Cached(Project).version != Cached(Project, version="2").version


async def test_clear_drops_this_service_only(settings: Settings, cache: Cache) -> None:
    await cache.read("k:5", loader(b"x", []))
    other = cache_for(settings, "st")
    try:
        await other.read("k:5", loader(b"y", []))
        assert await cache.clear() == 1
        assert await other.read("k:5", loader(b"z", [])) == b"y"
    finally:
        await other.clear()
        await other.close()
