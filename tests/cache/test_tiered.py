"""TieredCache: L1 then L2 with backfill, namespaces, single-flight and Redis failure immunity."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from llama_index.core.base.response.schema import Response

from ragprod.cache import MISS, MemoryCache, RedisCache, TieredCache
from ragprod.errors import ConfigurationError
from ragprod.testing import FakeClock
from tests._services import RedisProcess

ROOT = Path(__file__).resolve().parents[2]
Make = Callable[..., TieredCache]


def hits(cache: TieredCache, tier: str) -> float:
    return cache.metrics.value("ragprod_cache_hits_total", tier=tier) or 0.0


def test_l2_hit_backfills_l1(make_tiered: Make) -> None:
    """A value set by one process is an L2 hit in another, then an L1 hit there."""
    writer, reader = make_tiered(), make_tiered()
    writer.set("k", Response("answer"))
    assert reader.lookup("k")[1] == "l2"
    assert reader.lookup("k")[1] == "l1"
    assert str(reader.get("k")) == "answer"
    assert hits(reader, "l2") == 1
    assert hits(reader, "l1") == 2
    assert reader.lookup("absent") == (MISS, None)
    assert reader.metrics.value("ragprod_cache_misses_total") == 1


async def test_async_api_mirrors_sync(make_tiered: Make) -> None:
    """aset/aget/aget_many/ainvalidate behave like their sync twins."""
    a, b = make_tiered(), make_tiered()
    await a.aset("k", None)
    assert await b.aget("k") is None
    await a.aset_many([("x", 1), ("y", 2)])
    assert await b.aget_many(["x", "nope", "y"]) == [1, MISS, 2]
    await a.adelete("x")
    assert await a.aget("x") is MISS
    before = await a.ageneration("ns")
    assert await a.ainvalidate("ns") != before


def test_get_many_is_one_l1_pass_and_one_mget(make_tiered: Make) -> None:
    """A batch reads L1 hits locally and fetches only the rest from Redis."""
    writer, reader = make_tiered(), make_tiered()
    writer.set_many([("a", 1), ("b", 2), ("c", 3)])
    reader.set("a", 1)
    assert reader.get_many(["a", "b", "c", "d"]) == [1, 2, 3, MISS]
    assert hits(reader, "l1") == 1
    assert hits(reader, "l2") == 2


def test_vectors_are_stored_as_float32(make_tiered: Make, redis_client: redis.Redis) -> None:
    """set_many(vectors=True) writes packed float32 (4 bytes per dimension) and reads lists."""
    writer, reader = make_tiered(), make_tiered()
    writer.set_many([("v", [0.1] * 1536)], vectors=True)
    assert writer.l2 is not None
    raw = redis_client.get(writer.l2.value_key("v"))
    assert raw is not None
    assert len(raw) == 10 + 4 * 1536
    value = reader.get("v")
    assert len(value) == 1536
    assert abs(value[0] - 0.1) < 1e-7
    assert writer.get("v") == value  # L1 holds the same float32-rounded values


def test_corrupt_value_in_redis_is_a_counted_miss(
    make_tiered: Make, redis_client: redis.Redis
) -> None:
    """Foreign bytes under a cache key read as a miss and increment the corrupt counter."""
    cache = make_tiered()
    assert cache.l2 is not None
    redis_client.set(cache.l2.value_key("k"), b"\x80\x04garbage")
    assert cache.get("k") is MISS
    assert cache.metrics.value("ragprod_cache_corrupt_total") == 1


def test_unencodable_and_oversized_values_stay_local(make_tiered: Make) -> None:
    """Values Redis cannot or may not hold are served from L1 only, and counted."""
    cache, other = make_tiered(max_value_bytes=200), make_tiered(max_value_bytes=200)
    cache.set("obj", {"when": object()})
    cache.set("big", "x" * 500)
    assert cache.get("obj") is not MISS
    assert cache.get("big") == "x" * 500
    assert other.get("obj") is MISS
    assert other.get("big") is MISS
    skipped = cache.metrics.value
    assert skipped("ragprod_cache_skipped_total", reason="unencodable") == 1
    assert skipped("ragprod_cache_skipped_total", reason="oversized") == 1


def test_nothing_stored_is_a_pickle(
    make_tiered: Make, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Every value written to Redis carries the ragprod header, never a pickle opcode."""
    cache = make_tiered()
    cache.set("r", Response("x"))
    cache.set("j", {"a": [1, 2]})
    cache.set_many([("v", [1.0, 2.0])], vectors=True)
    values = [redis_client.get(k) for k in redis_client.scan_iter(f"{redis_prefix}:v:*")]
    assert len(values) == 3
    assert all(v is not None and v[:3] == b"RPc" and v[:1] != b"\x80" for v in values)


def test_invalidate_reaches_other_processes_after_generation_ttl(
    make_tiered: Make, clock: FakeClock
) -> None:
    """A bump by one cache is seen by another once its generation_ttl has passed."""
    a, b = make_tiered(generation_ttl=1.0), make_tiered(generation_ttl=1.0)
    g0 = b.generation("docs")
    assert a.generation("docs") == g0
    g1 = a.invalidate("docs")
    assert g1 != g0
    assert a.generation("docs") == g1
    assert b.generation("docs") == g0  # trusted for generation_ttl
    clock.advance(1.0)
    assert b.generation("docs") == g1
    assert a.generation("other") == b.generation("other")  # namespaces are independent


def test_invalidate_across_two_real_processes(redis_server_url: str, redis_prefix: str) -> None:
    """A child process's invalidate changes the generation this process reads from Redis."""
    mine = TieredCache.from_url(redis_server_url, prefix=redis_prefix, generation_ttl=0.0)
    before = mine.generation("shared")
    code = (
        "import sys; from ragprod.cache import TieredCache;"
        "c = TieredCache.from_url(sys.argv[1], prefix=sys.argv[2]);"
        "print(c.invalidate('shared'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, redis_server_url, redis_prefix],
        capture_output=True, text=True, check=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    after = mine.generation("shared")
    assert after != before
    assert after == out.stdout.strip().splitlines()[-1]


def test_invalidate_without_redis_is_local(dead_redis_url: str, clock: FakeClock) -> None:
    """With Redis down, invalidate still moves this process to a new generation, and logs it."""
    cache = TieredCache(
        MemoryCache(clock=clock), RedisCache(dead_redis_url, clock=clock), clock=clock
    )
    before = cache.generation("ns")
    assert cache.invalidate("ns") != before
    memory = TieredCache.memory()
    g = memory.generation("ns")
    assert memory.invalidate("ns") != g


def test_two_hundred_threads_compute_once(make_tiered: Make) -> None:
    """200 threads missing the same key at once make exactly one upstream call."""
    cache = make_tiered()
    calls = []
    gate = threading.Barrier(200)
    release = threading.Event()

    def compute() -> str:
        calls.append(1)
        release.wait(10)
        return "value"

    results: list[str] = []

    def worker() -> None:
        gate.wait()
        results.append(cache.get_or_compute("hot", compute))

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    while cache.metrics.value("ragprod_cache_singleflight_waits_total") != 199:
        if len(calls) and all(not t.is_alive() for t in threads[1:]):
            break  # pragma: no cover - diagnostic exit
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert results == ["value"] * 200


async def test_two_hundred_tasks_compute_once(make_tiered: Make) -> None:
    """200 asyncio tasks missing the same key make exactly one upstream call."""
    cache = make_tiered()
    calls = []

    async def compute() -> str:
        calls.append(1)
        await asyncio.sleep(0.05)
        return "value"

    results = await asyncio.gather(*[cache.aget_or_compute("hot", compute) for _ in range(200)])
    assert len(calls) == 1
    assert results == ["value"] * 200


def test_waiters_get_the_leaders_exception_and_it_is_not_cached(make_tiered: Make) -> None:
    """A failed computation raises in every waiter; the next call computes again."""
    cache = make_tiered()
    calls = []
    start = threading.Barrier(5)
    release = threading.Event()

    def compute() -> str:
        calls.append(1)
        release.wait(10)
        raise RuntimeError("upstream down")

    failures: list[BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            cache.get_or_compute("k", compute)
        except RuntimeError as exc:
            failures.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    while (cache.metrics.value("ragprod_cache_singleflight_waits_total") or 0) < 4:
        threading.Event().wait(0.01)
    release.set()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert len(failures) == 5
    assert cache.get_or_compute("k", lambda: "ok") == "ok"


async def test_cancelled_waiter_does_not_cancel_the_computation(make_tiered: Make) -> None:
    """Cancelling a waiting task leaves the shared computation running for the others."""
    cache = make_tiered()
    started = asyncio.Event()
    finish = asyncio.Event()
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        started.set()
        await finish.wait()
        return "done"

    leader = asyncio.create_task(cache.aget_or_compute("k", compute))
    await started.wait()
    waiter = asyncio.create_task(cache.aget_or_compute("k", compute))
    await asyncio.sleep(0)
    waiter.cancel()
    finish.set()
    assert await leader == "done"
    assert waiter.cancelled()
    assert calls == [1]


async def test_cancelled_leader_hands_over_to_a_waiter(make_tiered: Make) -> None:
    """If the computing task is cancelled, a waiter computes instead of failing."""
    cache = make_tiered()
    started = asyncio.Event()
    calls: list[int] = []

    async def compute() -> str:
        calls.append(1)
        started.set()
        if len(calls) == 1:
            await asyncio.sleep(3600)  # the first computation is cancelled
        return "done"

    leader = asyncio.create_task(cache.aget_or_compute("k", compute))
    await started.wait()
    waiter = asyncio.create_task(cache.aget_or_compute("k", compute))
    await asyncio.sleep(0)
    leader.cancel()
    assert await waiter == "done"
    assert calls == [1, 1]
    assert await cache.aget("k") == "done"


def test_ttl_function_sets_per_value_lifetimes(make_tiered: Make, clock: FakeClock) -> None:
    """get_or_compute's ttl may depend on the value (e.g. short TTL for empty results)."""
    cache = make_tiered()
    cache.get_or_compute("empty", list, ttl=lambda v: 5 if not v else None)
    cache.get_or_compute("full", lambda: [1], ttl=lambda v: 5 if not v else None)
    clock.advance(6)
    assert cache.l1 is not None
    assert cache.l1.get("empty") is MISS
    assert cache.l1.get("full") == [1]


def test_redis_killed_mid_use_never_raises(private_redis: RedisProcess, clock: FakeClock) -> None:
    """Redis stopped and restarted: every call returns; L1 keeps serving; L2 comes back."""
    l2 = RedisCache(private_redis.url, clock=clock)
    cache = TieredCache(MemoryCache(clock=clock), l2, clock=clock)
    cache.set("kept", "v")
    private_redis.stop()
    for i in range(50):
        assert cache.get("kept") == "v"
        assert cache.get_or_compute(f"new-{i}", lambda: "computed") == "computed"
        cache.invalidate("ns")
    assert not l2.available
    private_redis.start()
    clock.advance(l2.breaker.cooldown)
    cache.set("after", "restart")
    other = TieredCache(None, RedisCache(private_redis.url), clock=clock)
    assert other.get("after") == "restart"
    assert l2.available


def test_needs_a_tier() -> None:
    """A TieredCache with neither tier is a configuration mistake."""
    with pytest.raises(ConfigurationError, match="at least one tier"):
        TieredCache(None, None)


async def test_first_generation_read_is_never_guessed(make_tiered: Make) -> None:
    """Concurrent first readers of a bumped namespace all wait for, and share, one Redis read."""
    writer = make_tiered()
    bumped = writer.invalidate("ns")
    reader = make_tiered()
    seen = await asyncio.gather(*[reader.ageneration("ns") for _ in range(50)])
    assert set(seen) == {bumped}
    assert reader.generation("ns") == bumped


def test_cross_process_single_flight_with_a_redis_lock(make_tiered: Make) -> None:
    """With lock_wait, two caches sharing Redis compute a concurrent miss once."""
    a = make_tiered(lock_wait=30.0, lock_poll=0.01)
    b = make_tiered(lock_wait=30.0, lock_poll=0.01)
    for cache in (a, b):  # real time for the lock wait (the fixture clock is fake)
        cache.clock = time.monotonic
    calls: list[str] = []
    computing = threading.Event()
    release = threading.Event()

    def slow() -> str:
        calls.append("a")
        computing.set()
        release.wait(10)
        return "value"

    results: dict[str, str] = {}
    leader = threading.Thread(target=lambda: results.update(a=a.get_or_compute("k", slow)))
    leader.start()
    computing.wait(10)
    follower = threading.Thread(
        target=lambda: results.update(b=b.get_or_compute("k", lambda: calls.append("b") or "x"))
    )
    follower.start()
    release.set()
    leader.join()
    follower.join()
    assert calls == ["a"]
    assert results == {"a": "value", "b": "value"}


async def test_lock_wait_is_bounded(make_tiered: Make, redis_client: redis.Redis) -> None:
    """A lock nobody releases delays a miss by at most lock_wait, then it computes anyway."""
    clock = FakeClock()
    cache = make_tiered(lock_wait=1.0, lock_poll=0.25)
    cache.clock, cache._asleep = clock, clock.asleep
    assert cache.l2 is not None
    redis_client.set(cache.l2.lock_key("k"), "someone-else", px=60_000)
    assert await cache.aget_or_compute("k", _value("computed")) == "computed"
    assert clock.sleeps == [0.25] * 4


def test_lock_is_skipped_when_redis_is_down(dead_redis_url: str) -> None:
    """With Redis unavailable the claim returns at once and the value is computed."""
    cache = TieredCache.from_url(dead_redis_url, lock_wait=30.0)
    assert cache.get_or_compute("k", lambda: "v") == "v"


def _value(value: str) -> Callable[[], Any]:
    async def compute() -> str:
        return value

    return compute
