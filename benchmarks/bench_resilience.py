"""Resilience overhead against the real alternatives: pybreaker, circuitbreaker, tenacity."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import uuid
from collections.abc import Awaitable, Callable

import pybreaker
import redis
import tenacity
from circuitbreaker import CircuitBreaker as CbCircuitBreaker
from circuitbreaker import CircuitBreakerError as CbOpen

from _harness import Stat, Suite
from ragprod.errors import CircuitOpenError
from ragprod.resilience import (
    Bulkhead,
    CircuitBreaker,
    RateLimiter,
    RedisBreakerStore,
    Resilience,
    RetryPolicy,
    Timeout,
)

BATCH = 200  # async calls per event-loop run, so the loop's own cost is amortised


def _noop() -> None:
    return None


async def _anoop() -> None:
    return None


def _scaled(stat: Stat, factor: float) -> Stat:
    return Stat(wall_us=stat.wall_us / factor, cpu_us=stat.cpu_us / factor, spread=stat.spread)


def _acompare_per_call(
    suite: Suite,
    name: str,
    baseline: Callable[[], Awaitable[object]],
    candidate: Callable[[], Awaitable[object]],
    **kwargs: str,
) -> None:
    """Compare two coroutine functions, BATCH awaits per loop run, reported per call."""
    loop = asyncio.new_event_loop()

    def batch(fn: Callable[[], Awaitable[object]]) -> Callable[[], object]:
        async def many() -> None:
            for _ in range(BATCH):
                await fn()

        return lambda: loop.run_until_complete(many())

    try:
        result = suite.compare(name, batch(baseline), batch(candidate), **kwargs)  # type: ignore[arg-type]
    finally:
        loop.close()
    suite.results.remove(result)
    suite.record(
        dataclasses.replace(
            result,
            baseline=_scaled(result.baseline, BATCH),
            candidate=_scaled(result.candidate, BATCH),
        )
    )


def _open_pybreaker() -> pybreaker.CircuitBreaker:
    b = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    b.open()
    return b


def _reject(
    call: Callable[[], object], errors: tuple[type[BaseException], ...]
) -> Callable[[], None]:
    def attempt() -> None:
        try:  # noqa: SIM105 - a plain try is what callers write
            call()
        except errors:
            pass

    return attempt


def _threads_io(
    call: Callable[[Callable[[], None]], object], threads: int = 8, per: int = 10
) -> Callable[[], None]:
    """8 threads, each making ``per`` calls that sleep 1 ms (I/O) through ``call``."""

    def io() -> None:
        time.sleep(0.001)

    def run() -> None:
        def worker() -> None:
            for _ in range(per):
                call(io)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()

    return run


def run(suite: Suite) -> None:
    # -- circuit breaker, CLOSED -------------------------------------------------
    ours = CircuitBreaker("bench")
    py = pybreaker.CircuitBreaker()
    suite.compare(
        "breaker closed: call overhead",
        lambda: py.call(_noop),
        lambda: ours.call(_noop),
        baseline_label="pybreaker 1.x call()",
        note="success path, count window 100; bare call ~0.05 us",
    )
    cb_fn = CbCircuitBreaker(failure_threshold=5)(_noop)
    our_fn = CircuitBreaker("bench-deco")(_noop)
    suite.compare(
        "breaker closed: decorated function",
        cb_fn,
        our_fn,
        baseline_label="circuitbreaker @circuit",
        note="consecutive-failure counter (no window) vs sliding window",
    )
    suite.compare(
        "breaker closed: vs bare call",
        _noop,
        lambda: ours.call(_noop),
        baseline_label="bare function call",
        note="absolute overhead = ragprod - baseline",
    )
    # -- circuit breaker, OPEN ---------------------------------------------------
    open_ours = CircuitBreaker("bench-open")
    open_ours.force_open()
    open_py = _open_pybreaker()
    suite.compare(
        "breaker open: rejection",
        _reject(lambda: open_py.call(_noop), (pybreaker.CircuitBreakerError,)),
        _reject(lambda: open_ours.call(_noop), (CircuitOpenError,)),
        baseline_label="pybreaker (open)",
        note="raise + catch included; ours carries retry_after",
    )
    cb_open = CbCircuitBreaker(failure_threshold=1, recovery_timeout=3600)
    cb_open_fn = cb_open(_noop)
    cb_open._state = "open"  # circuitbreaker has no public way to open
    cb_open._opened = time.monotonic()
    suite.compare(
        "breaker open: rejection vs circuitbreaker",
        _reject(cb_open_fn, (CbOpen,)),
        _reject(lambda: open_ours.call(_noop), (CircuitOpenError,)),
        baseline_label="circuitbreaker (open)",
    )
    # -- retry -------------------------------------------------------------------
    ten = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_random_exponential()
    )(_noop)
    policy = RetryPolicy()
    our_retry = policy(_noop)
    suite.compare(
        "retry: first-try success (sync)",
        ten,
        our_retry,
        baseline_label="tenacity @retry",
        note="tenacity is entered only after a retryable failure",
    )
    aten = tenacity.retry(
        stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_random_exponential()
    )(_anoop)
    aours = policy(_anoop)
    _acompare_per_call(
        suite,
        "retry: first-try success (async)",
        aten,
        aours,
        baseline_label="tenacity @retry (async)",
        note=f"per await, {BATCH} awaits per loop run",
    )
    # -- the whole stack, async --------------------------------------------------
    stack = Resilience(
        breaker=CircuitBreaker("stack"),
        retry=RetryPolicy(),
        timeout=Timeout(30.0),
        bulkhead=Bulkhead(64),
        rate_limiter=RateLimiter(rate=1e12, burst=1e12),
    )
    _acompare_per_call(
        suite,
        "full stack: rate limit+bulkhead+breaker+retry+timeout (async)",
        _anoop,
        lambda: stack.acall(_anoop),
        baseline_label="bare await",
        note="absolute overhead = ragprod - baseline; one watchdog timer per loop",
    )
    # -- 8 threads doing I/O through one breaker ------------------------------------
    io_py = pybreaker.CircuitBreaker()
    io_ours = CircuitBreaker("io")
    suite.compare(
        "8 threads x 1 ms I/O through one breaker",
        _threads_io(io_py.call),
        _threads_io(io_ours.call),
        baseline_label="pybreaker (lock held during call)",
        note="80 calls per batch; ideal ~10 ms (8 in parallel)",
        rounds=5,
    )
    # -- shared state in Redis -------------------------------------------------------
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        client.ping()
    except redis.RedisError:
        return
    prefix = f"ragprod-bench:{uuid.uuid4().hex[:8]}:"
    try:
        shared_ours = CircuitBreaker("bench", store=RedisBreakerStore(client, prefix=prefix))
        storage = pybreaker.CircuitRedisStorage(
            pybreaker.STATE_CLOSED, client, namespace=prefix + "py"
        )
        shared_py = pybreaker.CircuitBreaker(state_storage=storage)
        suite.compare(
            "breaker closed with Redis state: call",
            lambda: shared_py.call(_noop),
            lambda: shared_ours.call(_noop),
            baseline_label="pybreaker + CircuitRedisStorage",
            note="ours: no round trip per success; one sync per 10 ms, amortised per batch",
            min_batch_seconds=0.2,
        )
    finally:
        keys = list(client.scan_iter(match=prefix + "*"))
        if keys:
            client.delete(*keys)
        client.close()
