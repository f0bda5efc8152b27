"""CachedForks: fork lookups answered from memory for ttl seconds, writes seen at once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest

from featureflag_server.fork_cache import CachedForks
from featureflag_server.memory_store import MemoryStore
from featureflag_server.sqlite_store import SQLiteStore
from featureflag_server.store import Fork
from tests.support.clock import Clock

TTL = 1.0


def fork(name: str = "demo", **flags: bool | str) -> Fork:
    return Fork(name=name, upstream="http://127.0.0.1:9000", flags=dict(flags), created_by="t")


class CountingStore(MemoryStore):
    """A MemoryStore that counts ``get_fork`` calls and can hold one in flight.

    With ``gate`` set, a lookup reads the store at once, then waits for the gate before
    answering: what it answers is what the store held when the lookup began.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gets: list[str] = []
        self.gate: asyncio.Event | None = None
        self.reading = asyncio.Event()

    async def get_fork(self, name: str) -> Fork | None:
        self.gets.append(name)
        found = await super().get_fork(name)
        if self.gate is not None:
            self.reading.set()
            await self.gate.wait()
        return found


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def counting() -> CountingStore:
    return CountingStore()


@pytest.fixture
async def cache(counting: CountingStore, clock: Clock) -> AsyncIterator[CachedForks]:
    cache = CachedForks(counting, ttl=TTL, clock=clock)
    yield cache
    await cache.close()


async def test_a_second_lookup_within_ttl_does_not_reach_the_store(
    counting: CountingStore, cache: CachedForks, clock: Clock
) -> None:
    await counting.create_fork(fork(a=True))  # behind the cache's back
    first = await cache.get_fork("demo")
    clock.now += TTL * 0.9
    second = await cache.get_fork("demo")
    assert first is not None and second is not None
    assert first.flags == second.flags == {"a": True}
    assert counting.gets == ["demo"]


async def test_after_ttl_the_store_is_asked_again(
    counting: CountingStore, cache: CachedForks, clock: Clock
) -> None:
    await counting.create_fork(fork(a=True))
    await cache.get_fork("demo")
    await counting.update_fork(fork(a=False))  # behind the cache's back: not seen yet...
    stale = await cache.get_fork("demo")
    assert stale is not None and stale.flags == {"a": True}
    clock.now += TTL * 1.1
    fresh = await cache.get_fork("demo")  # ...but once ttl has passed
    assert fresh is not None and fresh.flags == {"a": False}
    assert counting.gets == ["demo", "demo"]


async def test_a_miss_is_remembered_too(
    counting: CountingStore, cache: CachedForks, clock: Clock
) -> None:
    assert await cache.get_fork("nope") is None
    assert await cache.get_fork("nope") is None
    assert counting.gets == ["nope"]
    clock.now += TTL * 1.1
    assert await cache.get_fork("nope") is None
    assert counting.gets == ["nope", "nope"]


async def test_writes_through_the_cache_are_seen_at_once(cache: CachedForks) -> None:
    assert await cache.get_fork("demo") is None  # a cached miss...
    await cache.create_fork(fork(a=True))
    created = await cache.get_fork("demo")  # ...forgotten by the create
    assert created is not None and created.flags == {"a": True}
    await cache.update_fork(fork(a=False, b="x"))
    updated = await cache.get_fork("demo")
    assert updated is not None and updated.flags == {"a": False, "b": "x"}
    assert await cache.delete_fork("demo") is True
    assert await cache.get_fork("demo") is None


Write = Callable[[CachedForks], Awaitable[object]]
WRITES: dict[str, tuple[Write, dict[str, bool | str] | None]] = {
    "update": (lambda cache: cache.update_fork(fork(a=False)), {"a": False}),
    "delete": (lambda cache: cache.delete_fork("demo"), None),
}


@pytest.mark.parametrize("write", ["update", "delete"])
async def test_a_lookup_that_raced_a_write_does_not_cache_what_it_read(
    counting: CountingStore, cache: CachedForks, write: str
) -> None:
    do_write, expected = WRITES[write]
    await counting.create_fork(fork(a=True))
    counting.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_fork("demo"))
    await counting.reading.wait()  # the lookup has read {"a": True} and not answered yet
    await do_write(cache)  # the write lands while it is in flight
    counting.gate.set()
    raced = await lookup
    assert raced is not None and raced.flags == {"a": True}  # it read before the write
    counting.gate = None
    after = await cache.get_fork("demo")  # within ttl: must not be the raced answer
    assert (None if after is None else after.flags) == expected
    assert counting.gets == ["demo", "demo"]


async def test_a_lookup_that_raced_a_create_does_not_cache_its_miss(
    counting: CountingStore, cache: CachedForks
) -> None:
    counting.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_fork("demo"))
    await counting.reading.wait()  # the lookup found nothing and has not answered yet
    await cache.create_fork(fork(a=True))
    counting.gate.set()
    assert await lookup is None
    counting.gate = None
    created = await cache.get_fork("demo")
    assert created is not None and created.flags == {"a": True}


async def test_a_lookup_that_did_not_race_a_write_is_cached(
    counting: CountingStore, cache: CachedForks
) -> None:
    # The control for the race tests: the gate alone does not stop caching.
    await counting.create_fork(fork(a=True))
    counting.gate = asyncio.Event()
    lookup = asyncio.create_task(cache.get_fork("demo"))
    await counting.reading.wait()
    counting.gate.set()
    await lookup
    counting.gate = None
    await cache.get_fork("demo")
    assert counting.gets == ["demo"]


async def test_returned_forks_are_copies(counting: CountingStore, cache: CachedForks) -> None:
    await counting.create_fork(fork(a=True))
    first = await cache.get_fork("demo")
    assert first is not None
    first.flags["a"] = "changed by a caller"
    first.flags["b"] = True
    second = await cache.get_fork("demo")
    assert second is not None and second.flags == {"a": True}
    assert second is not first
    assert counting.gets == ["demo"]  # the copy came from the cache, not the store


async def test_max_entries_bounds_what_is_remembered(counting: CountingStore, clock: Clock) -> None:
    cache = CachedForks(counting, ttl=TTL, max_entries=3, clock=clock)
    names = [f"fork-{i}" for i in range(10)]
    for name in names:
        await cache.get_fork(name)
    assert len(cache._entries) <= 3
    counting.gets.clear()
    await cache.get_fork(names[-1])  # the latest is still remembered...
    await cache.get_fork(names[0])  # ...the first is not
    assert counting.gets == [names[0]]


async def test_list_and_catalog_are_not_cached(counting: CountingStore, cache: CachedForks) -> None:
    assert await cache.list_forks() == []
    await counting.create_fork(fork(a=True))
    await counting.put_catalog([{"name": "a", "type": "bool"}])
    assert [f.name for f in await cache.list_forks()] == ["demo"]
    assert await cache.get_catalog() == [{"name": "a", "type": "bool"}]
    await cache.put_catalog([{"name": "b", "type": "bool"}])
    assert await counting.get_catalog() == [{"name": "b", "type": "bool"}]


async def test_two_services_on_one_sqlite_file_see_each_others_writes_within_ttl(
    tmp_path: Path,
) -> None:
    path = tmp_path / "shared.sqlite3"
    clock_a, clock_b = Clock(1000.0), Clock(5000.0)
    a = CachedForks(SQLiteStore(path), ttl=TTL, clock=clock_a)
    b = CachedForks(SQLiteStore(path), ttl=TTL, clock=clock_b)
    try:
        assert await b.get_fork("demo") is None  # b remembers the miss
        created = await a.create_fork(fork(a=True))
        assert await b.get_fork("demo") is None  # within b's ttl
        assert [f.name for f in await b.list_forks()] == ["demo"]  # not cached
        clock_b.now += TTL * 1.1
        seen = await b.get_fork("demo")
        assert seen is not None and seen.flags == {"a": True}

        await a.update_fork(replace(created, flags={"a": False}))
        mine = await a.get_fork("demo")  # the writer sees its write at once
        assert mine is not None and mine.flags == {"a": False}
        stale = await b.get_fork("demo")  # the other, not until its ttl has passed
        assert stale is not None and stale.flags == {"a": True}
        clock_b.now += TTL * 1.1
        fresh = await b.get_fork("demo")
        assert fresh is not None and fresh.flags == {"a": False}

        assert await b.delete_fork("demo") is True
        assert await b.get_fork("demo") is None
        gone = await a.get_fork("demo")  # a still remembers it...
        assert gone is not None
        clock_a.now += TTL * 1.1
        assert await a.get_fork("demo") is None  # ...until its ttl has passed
    finally:
        await a.close()
        await b.close()
