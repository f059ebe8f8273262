"""Timeout, Bulkhead and RateLimiter: limits hold, refusals are typed and counted."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest
import redis

from ragprod.errors import (
    BulkheadFullError,
    ConfigurationError,
    RateLimitedError,
    UpstreamTimeoutError,
)
from ragprod.metrics import RagMetrics
from ragprod.resilience import Bulkhead, RateLimiter, Timeout
from ragprod.testing import FakeClock

# -- Timeout ---------------------------------------------------------------------------


def test_async_timeout_cancels_the_call() -> None:
    """An async call past its deadline is cancelled and UpstreamTimeoutError raised."""
    metrics = RagMetrics()
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def main() -> None:
        with pytest.raises(UpstreamTimeoutError) as info:
            await Timeout(0.01, name="llm", metrics=metrics).acall(hang)
        assert info.value.timeout == 0.01
        assert cancelled.is_set()

    asyncio.run(main())
    assert metrics.value("ragprod_resilience_timeouts_total", upstream="llm") == 1.0


def test_async_timeout_passes_results_and_own_errors() -> None:
    """A fast call returns its result; its own TimeoutError is not relabelled."""

    async def fast() -> int:
        return 7

    async def own() -> None:
        raise TimeoutError("from the callee")

    async def main() -> None:
        t = Timeout(5)
        assert await t.acall(fast) == 7
        with pytest.raises(TimeoutError, match="from the callee") as info:
            await t.acall(own)
        assert not isinstance(info.value, UpstreamTimeoutError)

    asyncio.run(main())


def test_sync_thread_timeout_stops_waiting_and_keeps_context() -> None:
    """Sync calls run in a worker with the caller's contextvars; the caller stops waiting."""
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    var.set("caller")
    release = threading.Event()
    t = Timeout(0.05, name="slow")
    assert t.call(var.get) == "caller"
    with pytest.raises(UpstreamTimeoutError):
        t.call(release.wait, 10)
    release.set()  # the abandoned call ends on its own


def test_sync_thread_timeout_reraises_the_callees_error_unchanged() -> None:
    """An exception inside the worker reaches the caller as itself, traceback included."""

    def boom() -> None:
        raise KeyError("from the callee")

    t = Timeout(5, name="err")
    with pytest.raises(KeyError, match="from the callee") as info:
        t.call(boom)
    assert any(frame.name == "boom" for frame in info.traceback)
    assert t.call(lambda: 3) == 3  # the worker survived


def test_sync_thread_timeout_skips_calls_abandoned_before_they_started() -> None:
    """With every worker busy, a call that times out in the queue never runs at all."""
    release = threading.Event()
    ran: list[str] = []
    t = Timeout(0.05, name="busy", max_workers=1)
    with pytest.raises(UpstreamTimeoutError):
        t.call(release.wait, 10)  # occupies the only worker
    with pytest.raises(UpstreamTimeoutError):
        t.call(ran.append, "late")  # queued behind it, abandoned
    release.set()
    assert t.call(lambda: "next") == "next"  # runs after the first call ends
    assert ran == []


def test_sync_check_timeout_discards_late_results() -> None:
    """sync='check' runs inline and refuses a result that came after the deadline."""
    clock = FakeClock()
    t = Timeout(1.0, sync="check", clock=clock)
    assert t.call(lambda: 1) == 1
    with pytest.raises(UpstreamTimeoutError):
        t.call(clock.advance, 2.0)


def test_timeout_configuration() -> None:
    """A non-positive timeout or unknown mode is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        Timeout(0)
    with pytest.raises(ConfigurationError):
        Timeout(1, sync="signal")  # type: ignore[arg-type]


# -- Bulkhead --------------------------------------------------------------------------


def test_bulkhead_refuses_beyond_max_concurrent() -> None:
    """With every slot taken and no waiting, a call is refused with BulkheadFullError."""
    metrics = RagMetrics()
    bulkhead = Bulkhead(2, name="db", metrics=metrics)
    with bulkhead.slot(), bulkhead.slot():
        assert bulkhead.in_flight == 2
        with pytest.raises(BulkheadFullError) as info, bulkhead.slot():
            pass
        assert info.value.name == "db"
    assert bulkhead.in_flight == 0
    assert metrics.value("ragprod_resilience_bulkhead_rejected_total", upstream="db") == 1.0


def test_bulkhead_waiter_gets_the_released_slot() -> None:
    """A thread waiting up to max_wait takes the slot a finishing call releases."""
    bulkhead = Bulkhead(1, max_wait=10.0)
    bulkhead.acquire()
    got = threading.Event()

    def waiter() -> None:
        with bulkhead.slot():
            got.set()

    t = threading.Thread(target=waiter)
    t.start()
    while not bulkhead._waiters:
        pass
    bulkhead.release()
    t.join(10)
    assert got.is_set()
    assert bulkhead.in_flight == 0


def test_bulkhead_wait_times_out() -> None:
    """A waiter gives up after max_wait with BulkheadFullError and leaves the queue."""
    bulkhead = Bulkhead(1, max_wait=0.01)
    bulkhead.acquire()
    with pytest.raises(BulkheadFullError):
        bulkhead.acquire()
    assert not bulkhead._waiters
    bulkhead.release()
    assert bulkhead.in_flight == 0


def test_bulkhead_async_tasks_share_slots() -> None:
    """64 tasks through a 4-slot bulkhead never exceed 4 in flight and all finish."""
    bulkhead = Bulkhead(4, max_wait=30.0)
    peak = 0

    async def work() -> None:
        nonlocal peak
        async with bulkhead.aslot():
            peak = max(peak, bulkhead.in_flight)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(work() for _ in range(64)))

    asyncio.run(main())
    assert peak == 4
    assert bulkhead.in_flight == 0


def test_bulkhead_cancelled_waiter_takes_no_slot() -> None:
    """A task cancelled while waiting leaves without holding a slot."""
    bulkhead = Bulkhead(1, max_wait=30.0)

    async def main() -> None:
        await bulkhead.aacquire()
        waiter = asyncio.create_task(bulkhead.aacquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        bulkhead.release()

    asyncio.run(main())
    assert bulkhead.in_flight == 0
    assert not bulkhead._waiters


def test_bulkhead_async_refuses_when_full() -> None:
    """Without waiting, an async call finding no slot is refused at once."""
    bulkhead = Bulkhead(1)

    async def main() -> None:
        async with bulkhead.aslot():
            with pytest.raises(BulkheadFullError):
                await bulkhead.aacquire()

    asyncio.run(main())


# -- RateLimiter -------------------------------------------------------------------------


def test_token_bucket_allows_burst_then_rate(clock: FakeClock) -> None:
    """burst calls pass at once; then one per 1/rate seconds, with retry_after until then."""
    limiter = RateLimiter(rate=2.0, burst=3, clock=clock)
    for _ in range(3):
        limiter.acquire()
    with pytest.raises(RateLimitedError) as info:
        limiter.acquire()
    assert info.value.retry_after == pytest.approx(0.5)
    clock.advance(0.5)
    limiter.acquire()
    clock.advance(100.0)
    for _ in range(3):  # refills to burst, not beyond
        limiter.acquire()
    with pytest.raises(RateLimitedError):
        limiter.acquire()


def test_buckets_are_per_key(clock: FakeClock) -> None:
    """Each key (a tenant) has its own bucket; a key function is read per call."""
    tenant: contextvars.ContextVar[str] = contextvars.ContextVar("tenant", default="a")
    limiter = RateLimiter(rate=1.0, burst=1, key=tenant.get, clock=clock)
    limiter.acquire()
    tenant.set("b")
    limiter.acquire()
    with pytest.raises(RateLimitedError):
        limiter.acquire()
    limiter.acquire(key="c")


def test_refusals_are_counted(clock: FakeClock) -> None:
    """Each refusal counts ragprod_resilience_rate_limited_total."""
    metrics = RagMetrics()
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock, name="llm", metrics=metrics)
    limiter.acquire()
    for _ in range(3):
        with pytest.raises(RateLimitedError):
            limiter.acquire()
    assert metrics.value("ragprod_resilience_rate_limited_total", upstream="llm") == 3.0


def test_redis_buckets_are_shared_by_replicas(redis_server_url: str, redis_prefix: str) -> None:
    """Two limiters on one Redis share each key's bucket (per-tenant limits across replicas)."""
    clock = FakeClock(1_700_000_000.0)
    a, b = (
        RateLimiter(rate=1.0, burst=2, store=redis_server_url, prefix=redis_prefix, clock=clock)
        for _ in range(2)
    )
    a.acquire(key="tenant-1")
    b.acquire(key="tenant-1")
    with pytest.raises(RateLimitedError) as info:
        a.acquire(key="tenant-1")
    assert info.value.retry_after == pytest.approx(1.0)
    b.acquire(key="tenant-2")
    clock.advance(1.0)
    b.acquire(key="tenant-1")


def test_redis_down_falls_back_to_local_buckets(dead_redis_url: str) -> None:
    """With Redis unreachable the limiter still limits, locally, and reports it."""
    metrics = RagMetrics()
    clock = FakeClock(1_700_000_000.0)
    limiter = RateLimiter(
        rate=1.0, burst=1, store=dead_redis_url, clock=clock, name="t", metrics=metrics
    )
    limiter.acquire()
    with pytest.raises(RateLimitedError):
        limiter.acquire()
    assert metrics.value("ragprod_resilience_store_degraded", upstream="t") == 1.0
    assert metrics.value("ragprod_resilience_store_errors_total", upstream="t") == 1.0


def test_rate_limiter_configuration() -> None:
    """Non-positive rate or burst is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        RateLimiter(rate=0)
    with pytest.raises(ConfigurationError):
        RateLimiter(rate=1, burst=0)


def test_async_timeout_many_tasks_one_timer() -> None:
    """Among 50 concurrent tasks under one Timeout, exactly the hanging ones time out."""
    t = Timeout(0.02)

    async def work(i: int) -> str:
        await asyncio.sleep(3600 if i % 5 == 0 else 0)
        return "ok"

    async def main() -> list[object]:
        await t.acall(work, 1)  # a finished entry at the head of the queue
        return await asyncio.gather(*(t.acall(work, i) for i in range(50)), return_exceptions=True)

    results = asyncio.run(main())
    assert sum(isinstance(r, UpstreamTimeoutError) for r in results) == 10
    assert results.count("ok") == 40


def test_async_timeout_leaves_outside_cancellation_alone() -> None:
    """A task cancelled by someone else gets CancelledError, not UpstreamTimeoutError."""
    t = Timeout(30)

    async def main() -> None:
        task = asyncio.create_task(t.acall(asyncio.sleep, 3600))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_async_timeout_call_that_swallows_cancellation() -> None:
    """A call that catches the cancellation and returns keeps its result; the task is clean."""
    t = Timeout(0.01)

    async def stubborn() -> str:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "late"
        return "never"

    async def main() -> None:
        assert await t.acall(stubborn) == "late"
        task = asyncio.current_task()
        assert task is not None
        assert task.cancelling() == 0
        await asyncio.sleep(0)  # not cancelled again

    asyncio.run(main())


def test_abandoned_sync_call_does_not_block_interpreter_exit() -> None:
    """A timed-out call that never returns runs on a daemon thread, so the process can exit."""
    import subprocess
    import sys

    code = (
        "import threading\n"
        "from ragprod.errors import UpstreamTimeoutError\n"
        "from ragprod.resilience import Timeout\n"
        "try:\n"
        "    Timeout(0.05).call(threading.Event().wait)\n"
        "except UpstreamTimeoutError:\n"
        "    print('timed out')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "timed out" in proc.stdout


def test_rate_limiter_with_hung_redis_is_bounded(hung_redis_url: str) -> None:
    """A Redis that never answers costs one socket timeout, then local buckets decide."""
    clock = FakeClock(1_700_000_000.0)
    client = redis.Redis.from_url(hung_redis_url, socket_timeout=0.1, socket_connect_timeout=0.1)
    limiter = RateLimiter(rate=1.0, burst=1, store=client, clock=clock, retry_interval=60.0)
    limiter.acquire()
    with pytest.raises(RateLimitedError):
        limiter.acquire()
