"""Fixtures for the cache tests: caches on the real test Redis, under the test's key prefix."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ragprod.cache import MemoryCache, RedisCache, TieredCache
from ragprod.metrics import RagMetrics
from ragprod.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock shared by the caches a test builds."""
    return FakeClock(1000.0)


@pytest.fixture
def make_tiered(
    redis_server_url: str, redis_prefix: str, clock: FakeClock
) -> Iterator[Callable[..., TieredCache]]:
    """Build TieredCaches (L1 + L2 on the test Redis, keys under ``redis_prefix``)."""
    made: list[TieredCache] = []

    def make(url: str | None = None, *, l1: bool = True, **options: Any) -> TieredCache:
        metrics = options.pop("metrics", None) or RagMetrics()
        tiered = {
            name: options.pop(name)
            for name in ("generation_ttl", "lock_wait", "lock_poll", "lock_ttl")
            if name in options
        }
        options.setdefault("prefix", redis_prefix)
        l2 = RedisCache(url or redis_server_url, clock=clock, metrics=metrics, **options)
        cache = TieredCache(
            MemoryCache(1000, 300, clock=clock) if l1 else None,
            l2,
            clock=clock,
            metrics=metrics,
            **tiered,
        )
        made.append(cache)
        return cache

    yield make
    for cache in made:
        assert cache.l2 is not None
        cache.l2.close()
