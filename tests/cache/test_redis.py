"""RedisCache: real Redis I/O, TTL jitter, and immunity to a dead, hung or restarted Redis."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis
import redis.asyncio as aredis
from structlog.testing import capture_logs

from ragprod.cache import RedisCache
from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics
from ragprod.testing import FakeClock
from tests._services import RedisProcess


def errors(metrics: RagMetrics, op: str, error: str) -> float:
    return metrics.value("ragprod_cache_redis_errors_total", op=op, error=error) or 0.0


def bypassed(metrics: RagMetrics, op: str) -> float:
    return metrics.value("ragprod_cache_redis_bypassed_total", op=op) or 0.0


def test_set_get_mget_delete_round_trip(redis_server_url: str, redis_prefix: str) -> None:
    """Bytes written under the prefix read back, singly and in one MGET."""
    cache = RedisCache(redis_server_url, prefix=redis_prefix)
    cache.set("a", b"1")
    cache.set_many([("b", b"2"), ("c", b"3")])
    assert cache.get("a") == b"1"
    assert cache.mget(["a", "missing", "c"]) == [b"1", None, b"3"]
    cache.delete("a")
    assert cache.get("a") is None
    assert cache.mget([]) == []
    cache.close()


async def test_async_operations(redis_server_url: str, redis_prefix: str) -> None:
    """The asyncio twins read and write the same keys."""
    cache = RedisCache(redis_server_url, prefix=redis_prefix)
    await cache.aset("a", b"1")
    await cache.aset_many([("b", b"2"), ("c", b"3")])
    assert await cache.aget("a") == b"1"
    assert await cache.amget(["b", "x", "c"]) == [b"2", None, b"3"]
    await cache.adelete("b")
    assert await cache.aget("b") is None
    assert cache.get("c") == b"3"


def test_ttl_is_stretched_by_jitter(
    redis_server_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """Each TTL is ttl * (1 + jitter * random()), with the injected random source."""
    draws = iter([0.0, 1.0, 0.5])
    cache = RedisCache(
        redis_server_url, prefix=redis_prefix, ttl=100, ttl_jitter=0.2, random=lambda: next(draws)
    )
    cache.set("low", b"x")
    cache.set("high", b"x")
    cache.set("own", b"x", ttl=10)
    low = redis_client.pttl(f"{redis_prefix}:v:low")
    high = redis_client.pttl(f"{redis_prefix}:v:high")
    own = redis_client.pttl(f"{redis_prefix}:v:own")
    assert 99_000 < low <= 100_000
    assert 119_000 < high <= 120_000
    assert 10_000 < own <= 11_000


def test_oversized_values_are_not_written(redis_server_url: str, redis_prefix: str) -> None:
    """A value above max_value_bytes is skipped; the others of the batch are written."""
    cache = RedisCache(redis_server_url, prefix=redis_prefix, max_value_bytes=10)
    cache.set_many([("big", b"x" * 11), ("small", b"x")])
    assert cache.mget(["big", "small"]) == [None, b"x"]


def test_generations_are_shared_counters(redis_server_url: str, redis_prefix: str) -> None:
    """A namespace's generation starts at 0 and INCR bumps it for every client."""
    a = RedisCache(redis_server_url, prefix=redis_prefix)
    b = RedisCache(redis_server_url, prefix=redis_prefix)
    assert a.get_generation("docs") == 0
    assert a.bump_generation("docs") == 1
    assert b.get_generation("docs") == 1
    assert asyncio.run(b.abump_generation("docs")) == 2
    assert asyncio.run(a.aget_generation("docs")) == 2


def test_dead_redis_is_a_miss_then_bypassed(dead_redis_url: str, clock: FakeClock) -> None:
    """Connection refused: reads miss, writes are skipped, and later calls skip Redis entirely."""
    metrics = RagMetrics()
    cache = RedisCache(dead_redis_url, clock=clock, metrics=metrics)
    with capture_logs() as logs:
        assert cache.get("k") is None
        cache.set("k", b"v")
        assert cache.mget(["a", "b"]) == [None, None]
        assert cache.bump_generation("ns") is None
    assert errors(metrics, "get", "ConnectionError") == 1
    assert bypassed(metrics, "set") == 1
    assert bypassed(metrics, "mget") == 1
    assert not cache.available
    assert metrics.value("ragprod_cache_redis_up") == 0
    assert [e["event"] for e in logs] == ["ragprod.cache.redis_unavailable"]
    assert dead_redis_url.rsplit(":", 1)[0] in logs[0]["target"]


def test_hung_redis_costs_one_socket_timeout(hung_redis_url: str, clock: FakeClock) -> None:
    """A server that never answers: the first call times out, the next ones bypass at once."""
    metrics = RagMetrics()
    cache = RedisCache(hung_redis_url, socket_timeout=0.05, clock=clock, metrics=metrics)
    start = time.monotonic()
    assert cache.get("k") is None
    for _ in range(20):
        assert cache.get("k") is None
    assert time.monotonic() - start < 5  # one timeout, not 21 (and never redis-py's default None)
    assert errors(metrics, "get", "TimeoutError") == 1
    assert bypassed(metrics, "get") == 20


async def test_hung_redis_async(hung_redis_url: str, clock: FakeClock) -> None:
    """The asyncio path also returns a miss after one timeout, then bypasses."""
    metrics = RagMetrics()
    cache = RedisCache(hung_redis_url, socket_timeout=0.05, clock=clock, metrics=metrics)
    results = [await cache.aget("k") for _ in range(5)]
    assert results == [None] * 5
    assert errors(metrics, "get", "TimeoutError") == 1
    assert bypassed(metrics, "get") == 4


def test_recovers_after_a_restart(private_redis: RedisProcess, clock: FakeClock) -> None:
    """Redis stopped mid-use: calls degrade to misses; once it is back, the next probe recovers."""
    metrics = RagMetrics()
    cache = RedisCache(private_redis.url, clock=clock, metrics=metrics, cooldown=0.5)
    cache.set("k", b"v")
    private_redis.stop()
    with capture_logs() as logs:
        assert cache.get("k") is None
        private_redis.start()
        assert cache.get("k") is None  # still cooling down: Redis not touched
        assert bypassed(metrics, "get") == 1
        clock.advance(0.5)
        cache.set("k", b"again")
        assert cache.get("k") == b"again"
    assert cache.available
    assert metrics.value("ragprod_cache_redis_up") == 1
    events = [e["event"] for e in logs]
    assert events == ["ragprod.cache.redis_unavailable", "ragprod.cache.redis_recovered"]


def test_paused_redis_times_out_then_recovers(
    private_redis: RedisProcess, clock: FakeClock
) -> None:
    """A frozen server (SIGSTOP) is bypassed after one timeout; after SIGCONT it serves again."""
    metrics = RagMetrics()
    cache = RedisCache(private_redis.url, clock=clock, metrics=metrics)
    cache.set("k", b"v")
    private_redis.pause()
    try:
        assert cache.get("k") is None
        assert errors(metrics, "get", "TimeoutError") == 1
    finally:
        private_redis.resume()
    clock.advance(1)
    # The timed-out connection may hold a late reply; the pool drops broken connections.
    values = [cache.get("k") for _ in range(3)]
    assert values[-1] == b"v"


def test_unavailable_is_logged_once_per_interval(dead_redis_url: str, clock: FakeClock) -> None:
    """Repeated failures across cool-downs log one warning per log_interval."""
    cache = RedisCache(dead_redis_url, clock=clock, cooldown=1, log_interval=60)
    with capture_logs() as logs:
        for _ in range(10):
            cache.get("k")
            clock.advance(1)  # each call is a probe that fails again
        clock.advance(60)
        cache.get("k")
    assert [e["event"] for e in logs].count("ragprod.cache.redis_unavailable") == 2


def test_probe_is_single(dead_redis_url: str, clock: FakeClock) -> None:
    """After the cool-down exactly one caller probes; the others keep bypassing until it returns."""
    cache = RedisCache(dead_redis_url, clock=clock, cooldown=1)
    cache.get("k")
    clock.advance(1)
    assert cache.breaker.allow() is True
    assert cache.breaker.allow() is False


def test_command_errors_do_not_open_the_breaker(
    redis_server_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """A WRONGTYPE reply is counted and read as a miss, but Redis stays in use."""
    metrics = RagMetrics()
    cache = RedisCache(redis_server_url, prefix=redis_prefix, metrics=metrics)
    redis_client.rpush(f"{redis_prefix}:gen:ns", "x")
    assert cache.get_generation("ns") is None
    assert errors(metrics, "generation", "ResponseError") == 1
    assert cache.available


def test_client_objects_are_accepted(
    redis_server_url: str, redis_prefix: str, redis_client: redis.Redis
) -> None:
    """A ready sync client works for sync calls and, through a thread, for async calls."""
    cache = RedisCache(redis_client, prefix=redis_prefix)
    cache.set("k", b"v")
    assert cache.get("k") == b"v"
    assert asyncio.run(cache.aget("k")) == b"v"


async def test_async_client_objects_are_accepted(
    aredis_client: aredis.Redis, redis_prefix: str
) -> None:
    """A ready asyncio client serves async calls; sync calls bypass Redis instead of failing."""
    metrics = RagMetrics()
    cache = RedisCache(aredis_client, prefix=redis_prefix, metrics=metrics)
    await cache.aset("k", b"v")
    assert await cache.aget("k") == b"v"
    assert cache.get("k") is None
    assert bypassed(metrics, "get") == 1


def test_credentials_are_not_logged(clock: FakeClock) -> None:
    """The password in a URL never reaches the log target."""
    cache = RedisCache("redis://user:hunter2@127.0.0.1:1/0", clock=clock)
    with capture_logs() as logs:
        cache.get("k")
    assert "hunter2" not in repr(logs)
    assert "hunter2" not in repr(cache)


def test_bad_options_are_rejected() -> None:
    """Non-positive TTL or timeout, or jitter outside [0, 1], raise ValueError."""

    for kwargs in ({"ttl": 0}, {"socket_timeout": 0}, {"ttl_jitter": 2}):
        options: dict[str, Any] = kwargs
        with pytest.raises(ConfigurationError, match="RedisCache"):
            RedisCache("redis://127.0.0.1:1/0", **options)


async def test_aclose_closes_the_loops_client(redis_server_url: str, redis_prefix: str) -> None:
    """aclose() releases this loop's asyncio client; later calls open a new one."""
    cache = RedisCache(redis_server_url, prefix=redis_prefix)
    await cache.aset("k", b"v")
    await cache.aclose()
    assert await cache.aget("k") == b"v"
    await cache.aclose()
