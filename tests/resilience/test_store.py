"""RedisBreakerStore: one breaker state across processes, against a real Redis."""

from __future__ import annotations

import multiprocessing
import threading
from typing import Any

import pytest
import redis
from structlog.testing import capture_logs

from ragprod.errors import CircuitOpenError
from ragprod.metrics import RagMetrics
from ragprod.resilience import BreakerState, CircuitBreaker, RedisBreakerStore
from ragprod.testing import FakeClock


def fail(breaker: CircuitBreaker) -> None:
    try:
        with breaker.guard():
            raise ConnectionError("down")
    except (ConnectionError, CircuitOpenError):
        pass


def ok(breaker: CircuitBreaker) -> None:
    with breaker.guard():
        pass


def replica(store: RedisBreakerStore, clock: FakeClock, **kw: Any) -> CircuitBreaker:
    """A breaker as one process/replica would build it (same name, same store)."""
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("window_size", 10)
    kw.setdefault("open_duration", 30.0)
    kw.setdefault("half_open_calls", 2)
    return CircuitBreaker("shared", clock=clock, store=store, **kw)


@pytest.fixture
def store_clock() -> FakeClock:
    """The wall clock the store writes into Redis (shared by all replicas)."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def store(redis_server_url: str, redis_prefix: str, store_clock: FakeClock) -> RedisBreakerStore:
    """A store on the test Redis under this test's prefix."""
    return RedisBreakerStore(redis_server_url, prefix=f"{redis_prefix}:", clock=store_clock)


def advance(seconds: float, *clocks: FakeClock) -> None:
    for c in clocks:
        c.advance(seconds)


def test_failures_in_one_replica_open_the_breaker_for_all(
    store: RedisBreakerStore, store_clock: FakeClock
) -> None:
    """Failures seen by two replicas add up in the shared window; both end up OPEN."""
    clock = FakeClock()
    a, b = replica(store, clock), replica(store, clock)
    fail(a)
    fail(b)
    ok(a)  # buffered in a, flushed with a's next failure
    assert a.state is BreakerState.CLOSED
    fail(a)  # 3 failures of 4 calls in the shared window
    assert a.state is BreakerState.OPEN
    assert b.state is BreakerState.CLOSED  # b has not synced yet
    advance(store.sync_interval, clock, store_clock)
    with pytest.raises(CircuitOpenError) as info:
        ok(b)
    assert b.state is BreakerState.OPEN
    assert info.value.retry_after == pytest.approx(30.0 - store.sync_interval)


def test_success_path_makes_no_round_trip(private_redis: Any) -> None:
    """While CLOSED, successes cost no Redis command until the sync interval passes."""
    client = redis.Redis.from_url(private_redis.url)
    clock = FakeClock()
    store = RedisBreakerStore(client, prefix="t:", clock=clock, sync_interval=1.0)
    breaker = replica(store, clock)
    ok(breaker)  # first call syncs once

    def evals() -> int:
        stats = client.info("commandstats")
        return sum(v["calls"] for k, v in stats.items() if k.startswith("cmdstat_eval"))

    before = evals()
    for _ in range(500):
        ok(breaker)
    assert evals() == before
    clock.advance(1.0)
    ok(breaker)  # one sync per interval flushes the buffered successes
    assert evals() == before + 1
    fail(breaker)  # a failure is one round trip
    assert evals() == before + 2


def test_half_open_trials_are_shared(store: RedisBreakerStore, store_clock: FakeClock) -> None:
    """Across replicas, HALF_OPEN admits exactly half_open_calls trials, then closes once."""
    clock = FakeClock()
    a, b, c = (replica(store, clock) for _ in range(3))
    for _ in range(4):
        fail(a)
    advance(30.0, clock, store_clock)
    ga = a.guard().__enter__()
    gb = b.guard().__enter__()
    with pytest.raises(CircuitOpenError):
        ok(c)
    ga.__exit__(None, None, None)
    gb.__exit__(None, None, None)
    assert b.state is BreakerState.CLOSED
    advance(store.sync_interval, clock, store_clock)
    ok(c)
    assert c.state is BreakerState.CLOSED


def test_trials_failing_reopen_for_everyone(
    store: RedisBreakerStore, store_clock: FakeClock
) -> None:
    """Failed trials reopen the shared breaker; other replicas reject without asking Redis."""
    clock = FakeClock()
    a, b = replica(store, clock), replica(store, clock)
    for _ in range(4):
        fail(a)
    advance(30.0, clock, store_clock)
    fail(a)
    fail(b)
    assert a.state is BreakerState.OPEN or b.state is BreakerState.OPEN
    advance(store.sync_interval, clock, store_clock)
    with pytest.raises(CircuitOpenError):
        ok(a)
    with pytest.raises(CircuitOpenError):
        ok(b)


def test_cancelled_trial_returns_the_shared_permit(
    store: RedisBreakerStore, store_clock: FakeClock
) -> None:
    """A trial cancelled in one replica gives its permit back to the shared pool."""
    clock = FakeClock()
    a, b = replica(store, clock, half_open_calls=1), replica(store, clock, half_open_calls=1)
    for _ in range(4):
        fail(a)
    advance(30.0, clock, store_clock)
    with pytest.raises(KeyboardInterrupt), a.guard():
        raise KeyboardInterrupt
    ok(b)
    assert b.state is BreakerState.CLOSED


def test_time_window_is_shared(store: RedisBreakerStore, store_clock: FakeClock) -> None:
    """A time-based shared window forgets outcomes older than window_duration."""
    clock = FakeClock()
    a, b = (replica(store, clock, window_duration=10.0) for _ in range(2))
    fail(a)
    fail(b)
    advance(11.0, clock, store_clock)
    fail(a)
    fail(b)
    assert a.state is BreakerState.CLOSED
    assert b.state is BreakerState.CLOSED
    fail(a)
    fail(b)
    assert b.state is BreakerState.OPEN


def test_operator_force_open_is_shared(store: RedisBreakerStore, store_clock: FakeClock) -> None:
    """force_open() in one replica rejects calls in the others after their next sync."""
    clock = FakeClock()
    a, b = replica(store, clock), replica(store, clock)
    ok(b)
    a.force_open()
    advance(store.sync_interval, clock, store_clock)
    with pytest.raises(CircuitOpenError):
        ok(b)
    a.reset()
    advance(store.sync_interval, clock, store_clock)
    ok(b)


def test_redis_down_falls_back_to_local_state(dead_redis_url: str) -> None:
    """With Redis refusing connections the breaker works on local state and says so."""
    metrics = RagMetrics()
    clock = FakeClock()
    store = RedisBreakerStore(dead_redis_url, socket_timeout=0.2)
    breaker = CircuitBreaker(
        "down", store=store, clock=clock, minimum_calls=4, window_size=10, metrics=metrics
    )
    with capture_logs() as logs:
        ok(breaker)
        for _ in range(4):
            fail(breaker)
    assert breaker.degraded
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        ok(breaker)
    assert metrics.value("ragprod_resilience_store_errors_total", upstream="down") >= 1
    assert metrics.value("ragprod_resilience_store_degraded", upstream="down") == 1.0
    events = [e for e in logs if e["event"] == "ragprod.resilience.store_unavailable"]
    assert events
    assert events[0]["fallback"] == "local_state"


def test_hung_redis_is_bounded_by_the_socket_timeout(hung_redis_url: str) -> None:
    """A Redis that never answers costs one socket timeout, then local state is used."""
    clock = FakeClock()
    store = RedisBreakerStore(hung_redis_url, socket_timeout=0.1, retry_interval=60.0)
    breaker = CircuitBreaker("hung", store=store, clock=clock)
    for _ in range(20):
        ok(breaker)
    assert breaker.degraded
    assert breaker.state is BreakerState.CLOSED


def test_recovers_when_redis_returns(private_redis: Any) -> None:
    """After an outage the breaker goes back to the shared state and clears the degraded flag."""
    metrics = RagMetrics()
    clock = FakeClock()
    store = RedisBreakerStore(
        private_redis.url, prefix="r:", clock=clock, retry_interval=5.0, socket_timeout=0.5
    )
    breaker = CircuitBreaker("back", store=store, clock=clock, metrics=metrics)
    ok(breaker)
    private_redis.stop()
    clock.advance(1.0)
    ok(breaker)
    assert breaker.degraded
    private_redis.start()
    clock.advance(5.0)
    ok(breaker)
    assert not breaker.degraded
    assert metrics.value("ragprod_resilience_store_degraded", upstream="back") == 0.0


# -- several real processes ------------------------------------------------------


def _process(url: str, prefix: str, threads: int, results: Any, release: Any) -> None:
    store = RedisBreakerStore(url, prefix=prefix)
    breaker = CircuitBreaker("mp", store=store, half_open_calls=3, open_duration=0.0)
    barrier = threading.Barrier(threads)

    def worker() -> None:
        barrier.wait()
        try:
            with breaker.guard():
                results.put("admitted")
                release.wait(20)
        except CircuitOpenError:
            results.put("rejected")

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


def test_four_processes_admit_exactly_n_trials(redis_server_url: str, redis_prefix: str) -> None:
    """4 processes x 16 threads racing into a shared half-open breaker: 3 trials in total."""
    prefix = f"{redis_prefix}:"
    opener = CircuitBreaker(
        "mp", store=RedisBreakerStore(redis_server_url, prefix=prefix), open_duration=0.0
    )
    opener.force_open()
    opener._store.set_state(opener, "open")  # type: ignore[union-attr]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    release = ctx.Event()
    procs = [
        ctx.Process(target=_process, args=(redis_server_url, prefix, 16, results, release))
        for _ in range(4)
    ]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in range(64)]
    release.set()
    for p in procs:
        p.join(30)
    assert outcomes.count("admitted") == 3
    assert outcomes.count("rejected") == 61


def test_operator_disable_is_shared(store: RedisBreakerStore, store_clock: FakeClock) -> None:
    """disable() in one replica lets every call through in the others, unrecorded."""
    clock = FakeClock()
    a, b = replica(store, clock), replica(store, clock)
    ok(b)
    a.disable()
    advance(store.sync_interval, clock, store_clock)
    for _ in range(10):
        fail(b)
    assert b.state is BreakerState.DISABLED
    ok(b)
