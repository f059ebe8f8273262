"""MemoryCache: the L1 tier's TTL, LRU bound and thread safety."""

from __future__ import annotations

import threading

import pytest

from ragprod.cache import MISS, MemoryCache
from ragprod.errors import ConfigurationError
from ragprod.testing import FakeClock


def test_entries_expire_after_their_ttl(clock: FakeClock) -> None:
    """An entry is served until its TTL passes, then it is a miss."""
    cache = MemoryCache(10, ttl=60, clock=clock)
    cache.set("a", 1)
    cache.set("b", 2, ttl=5)
    clock.advance(5)
    assert cache.get("a") == 1
    assert cache.get("b") is MISS
    clock.advance(55)
    assert cache.get("a") is MISS
    assert len(cache) == 0


def test_per_entry_ttl_is_capped_by_the_cache_ttl(clock: FakeClock) -> None:
    """A ttl longer than the cache's own is cut to the cache's."""
    cache = MemoryCache(10, ttl=10, clock=clock)
    cache.set("a", 1, ttl=3600)
    clock.advance(10)
    assert cache.get("a") is MISS


def test_none_is_a_cacheable_value(clock: FakeClock) -> None:
    """None is stored and returned; MISS marks absence."""
    cache = MemoryCache(clock=clock)
    cache.set("k", None)
    assert cache.get("k") is None
    assert cache.get("other") is MISS
    assert cache.get("other", "default") == "default"


def test_least_recently_used_entry_is_evicted_and_counted(clock: FakeClock) -> None:
    """At maxsize the least recently used entry goes, and the eviction hook fires."""
    cache = MemoryCache(2, clock=clock)
    seen: list[int] = []
    cache.on_evict = lambda: seen.append(1)
    cache.set("a", 1)
    cache.set("b", 2)
    cache.get("a")
    cache.set("c", 3)
    assert cache.get("b") is MISS
    assert cache.get("a") == 1
    assert cache.get("c") == 3
    assert cache.evictions == 1
    assert seen == [1]


def test_batch_operations(clock: FakeClock) -> None:
    """set_many and get_many work in one pass, MISS for absent keys."""
    cache = MemoryCache(clock=clock)
    cache.set_many([("a", 1), ("b", [2])])
    assert cache.get_many(["a", "x", "b"]) == [1, MISS, [2]]
    cache.delete("a")
    cache.clear()
    assert cache.get_many(["a", "b"]) == [MISS, MISS]


def test_concurrent_writers_and_readers_are_safe() -> None:
    """Eight threads hammering one small cache leave it consistent and within bounds."""
    cache = MemoryCache(50)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(2000):
                cache.set(f"{n}-{i % 80}", i)
                cache.get(f"{(n + 1) % 8}-{i % 80}")
        except BaseException as exc:  # pragma: no cover - the failure being tested
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(cache) <= 50


@pytest.mark.parametrize(("maxsize", "ttl"), [(0, 1), (1, 0), (1, -1)])
def test_bad_bounds_are_rejected(maxsize: int, ttl: float) -> None:
    """A cache that could hold nothing is a configuration error."""
    with pytest.raises(ConfigurationError, match="MemoryCache"):
        MemoryCache(maxsize, ttl)
