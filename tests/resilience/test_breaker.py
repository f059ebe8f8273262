"""CircuitBreaker: resilience4j's state machine, with a fake clock."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from structlog.testing import capture_logs

from ragprod.errors import CircuitOpenError, ConfigurationError
from ragprod.metrics import RagMetrics
from ragprod.resilience import BreakerState, CircuitBreaker, on, when
from ragprod.resilience._breaker import open_error
from ragprod.testing import FakeClock


def fail(breaker: CircuitBreaker, exc: BaseException | None = None) -> None:
    """One failed call through the breaker."""
    try:
        with breaker.guard():
            raise exc or ConnectionError("down")
    except BaseException:
        pass


def ok(breaker: CircuitBreaker) -> None:
    """One successful call through the breaker."""
    with breaker.guard():
        pass


def make(clock: FakeClock, **kw: Any) -> CircuitBreaker:
    kw.setdefault("minimum_calls", 4)
    kw.setdefault("window_size", 10)
    kw.setdefault("open_duration", 30.0)
    kw.setdefault("half_open_calls", 2)
    return CircuitBreaker("upstream", clock=clock, **kw)


def test_stays_closed_below_minimum_calls(clock: FakeClock) -> None:
    """Failures below minimum_calls never open the breaker, whatever the rate."""
    breaker = make(clock)
    for _ in range(3):
        fail(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_opens_when_failure_rate_reaches_threshold(clock: FakeClock) -> None:
    """With minimum_calls met, a failure rate at the threshold (50%) opens the breaker."""
    breaker = make(clock)
    ok(breaker)
    ok(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 1/3, and below minimum
    fail(breaker)
    assert breaker.state is BreakerState.OPEN  # 2/4 = 50%


def test_count_window_forgets_old_outcomes(clock: FakeClock) -> None:
    """Only the last window_size outcomes count: old failures slide out."""
    breaker = make(clock, window_size=4, failure_rate_threshold=0.75)
    fail(breaker)
    fail(breaker)
    ok(breaker)
    for _ in range(4):
        ok(breaker)  # pushes both failures out of the 4-call window
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # 2/4 < 75%
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_minimum_calls_is_capped_at_count_window_size(clock: FakeClock) -> None:
    """As in resilience4j, minimum_calls above window_size means window_size."""
    breaker = make(clock, window_size=3, minimum_calls=100)
    assert breaker.minimum_calls == 3
    for _ in range(3):
        fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_time_window_counts_only_recent_seconds(clock: FakeClock) -> None:
    """A time-based window forgets outcomes older than window_duration."""
    breaker = make(clock, window_duration=10.0, minimum_calls=4)
    for _ in range(3):
        fail(breaker)
    clock.advance(11.0)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED  # the three earlier ones expired
    assert breaker.metrics_snapshot() == {"calls": 1, "failures": 1, "slow": 0}
    for _ in range(3):
        fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_slow_calls_open_the_breaker(clock: FakeClock) -> None:
    """Calls slower than slow_call_duration open it at the slow-call rate threshold."""
    breaker = make(clock, slow_call_duration=2.0, slow_call_rate_threshold=0.5)
    for i in range(4):
        with breaker.guard():
            clock.advance(3.0 if i % 2 else 0.1)
    assert breaker.state is BreakerState.OPEN
    assert (
        breaker.signals.metrics.value(
            "ragprod_resilience_breaker_calls_total", breaker="upstream", outcome="slow_success"
        )
        == 2.0
    )


def test_open_rejects_fast_with_retry_after(clock: FakeClock) -> None:
    """An open breaker raises CircuitOpenError naming the breaker and the time left."""
    breaker = make(clock)
    for _ in range(4):
        fail(breaker)
    clock.advance(10.0)
    called = []
    with pytest.raises(CircuitOpenError) as info:
        breaker.call(called.append, 1)
    assert called == []
    assert info.value.name == "upstream"
    assert info.value.retry_after == pytest.approx(20.0)
    assert breaker.retry_after == pytest.approx(20.0)


def test_fast_error_matches_the_regular_constructor() -> None:
    """The rejection error built without __init__ equals CircuitOpenError(...) in every field."""
    for retry_after in (None, 0.0, 12.3456):
        fast = open_error("llm", retry_after)
        slow = CircuitOpenError("llm", retry_after=retry_after)
        assert (str(fast), repr(fast), fast.args) == (str(slow), repr(slow), slow.args)
        assert (fast.name, fast.retry_after) == (slow.name, slow.retry_after)


def open_breaker(clock: FakeClock, **kw: Any) -> CircuitBreaker:
    breaker = make(clock, **kw)
    for _ in range(4):
        fail(breaker)
    assert breaker.state is BreakerState.OPEN
    clock.advance(30.0)
    return breaker


def test_half_open_admits_exactly_n_then_rejects(clock: FakeClock) -> None:
    """After open_duration, exactly half_open_calls trials run; others are rejected at once."""
    breaker = open_breaker(clock)
    first = breaker.guard().__enter__()
    assert breaker.state is BreakerState.HALF_OPEN
    second = breaker.guard().__enter__()
    with pytest.raises(CircuitOpenError):
        ok(breaker)
    first.__exit__(None, None, None)
    second.__exit__(None, None, None)
    assert breaker.state is BreakerState.CLOSED


def test_half_open_reopens_when_trials_fail(clock: FakeClock) -> None:
    """Trial outcomes at the failure threshold send the breaker back to OPEN for open_duration."""
    breaker = open_breaker(clock)
    ok(breaker)
    fail(breaker)  # 1/2 = 50% >= threshold
    assert breaker.state is BreakerState.OPEN
    assert breaker.retry_after == pytest.approx(30.0)


def test_closing_resets_the_window(clock: FakeClock) -> None:
    """A breaker that closes starts with an empty window."""
    breaker = open_breaker(clock)
    ok(breaker)
    ok(breaker)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.metrics_snapshot()["calls"] == 0


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), asyncio.CancelledError(), GeneratorExit()])
def test_cancellation_is_not_counted_and_releases_the_trial_permit(
    clock: FakeClock, exc: BaseException
) -> None:
    """Cancellation-like exits count as nothing, and a cancelled trial's permit returns."""
    breaker = make(clock)
    for _ in range(10):
        fail(breaker, exc)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.metrics_snapshot()["calls"] == 0
    for _ in range(4):
        fail(breaker)
    clock.advance(30.0)
    fail(breaker, exc)  # a cancelled trial
    assert breaker.state is BreakerState.HALF_OPEN
    ok(breaker)
    ok(breaker)  # both permits were still available
    assert breaker.state is BreakerState.CLOSED


def test_record_and_ignore_predicates(clock: FakeClock) -> None:
    """ignore= exceptions count as nothing; exceptions outside record= count as successes."""
    breaker = make(
        clock,
        record=on(ConnectionError) | when(lambda e: getattr(e, "status", 0) >= 500),
        ignore=on(PermissionError),
    )
    for _ in range(5):
        fail(breaker, PermissionError())
        fail(breaker, ValueError())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.metrics_snapshot() == {"calls": 5, "failures": 0, "slow": 0}
    http = RuntimeError()
    http.status = 503  # type: ignore[attr-defined]
    for _ in range(5):
        fail(breaker, http)
    assert breaker.state is BreakerState.OPEN


def test_late_outcomes_from_an_earlier_state_are_dropped(clock: FakeClock) -> None:
    """A call admitted while CLOSED that finishes after the breaker opened changes nothing."""
    breaker = open_breaker(clock, half_open_calls=1)
    clock.advance(-0.0)
    breaker.reset()
    straggler = breaker.guard().__enter__()
    for _ in range(4):
        fail(breaker)
    assert breaker.state is BreakerState.OPEN
    clock.advance(30.0)
    trial = breaker.guard().__enter__()
    straggler.__exit__(ConnectionError, ConnectionError(), None)  # must not count as the trial
    assert breaker.state is BreakerState.HALF_OPEN
    trial.__exit__(None, None, None)
    assert breaker.state is BreakerState.CLOSED


def test_operator_states(clock: FakeClock) -> None:
    """DISABLED lets everything through unrecorded; FORCED_OPEN rejects everything; reset closes."""
    breaker = make(clock)
    breaker.disable()
    for _ in range(20):
        fail(breaker)
    assert breaker.state is BreakerState.DISABLED
    breaker.force_open()
    clock.advance(1000.0)
    with pytest.raises(CircuitOpenError) as info:
        ok(breaker)
    assert info.value.retry_after is None
    breaker.reset()
    ok(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_bad_configuration_lists_every_problem() -> None:
    """Out-of-range arguments raise one ConfigurationError naming all of them."""
    with pytest.raises(ConfigurationError) as info:
        CircuitBreaker(failure_rate_threshold=0, minimum_calls=0, half_open_calls=0)
    assert len(info.value.problems) == 3


def test_decorator_and_call_sync_and_async(clock: FakeClock) -> None:
    """The breaker decorates sync and async functions and guards call()/acall()."""
    breaker = make(clock)

    @breaker
    def double(x: int) -> int:
        return 2 * x

    @breaker
    async def adouble(x: int) -> int:
        return 2 * x

    async def boom() -> None:
        raise ConnectionError

    assert double(2) == 4
    assert asyncio.run(adouble(3)) == 6
    assert breaker.call(double, 1) == 2
    for _ in range(4):
        with pytest.raises(ConnectionError):
            asyncio.run(breaker.acall(boom))
    with pytest.raises(CircuitOpenError):
        double(1)
    with pytest.raises(CircuitOpenError):
        asyncio.run(adouble(1))


def test_async_with_guard(clock: FakeClock) -> None:
    """The guard also works as an async context manager."""
    breaker = make(clock)

    async def main() -> None:
        async with breaker.guard():
            await asyncio.sleep(0)

    asyncio.run(main())
    assert breaker.metrics_snapshot()["calls"] == 1


def test_metrics_and_logs_for_transitions(clock: FakeClock) -> None:
    """Transitions update the state gauge, count transitions and log a structured event."""
    metrics = RagMetrics()
    breaker = make(clock, metrics=metrics)
    ok(breaker)
    with capture_logs() as logs:
        for _ in range(3):
            fail(breaker)  # 3 of 4 failed: opens
    with pytest.raises(CircuitOpenError):
        ok(breaker)
    value = metrics.value
    assert value("ragprod_resilience_breaker_state", breaker="upstream", state="open") == 1.0
    assert value("ragprod_resilience_breaker_state", breaker="upstream", state="closed") == 0.0
    assert (
        value(
            "ragprod_resilience_breaker_transitions_total",
            breaker="upstream",
            from_state="closed",
            to_state="open",
        )
        == 1.0
    )
    assert (
        value("ragprod_resilience_breaker_calls_total", breaker="upstream", outcome="success") == 1
    )
    assert (
        value("ragprod_resilience_breaker_calls_total", breaker="upstream", outcome="failure") == 3
    )
    assert (
        value("ragprod_resilience_breaker_calls_total", breaker="upstream", outcome="rejected") == 1
    )
    events = [e for e in logs if e["event"] == "ragprod.resilience.breaker_transition"]
    assert events == [
        {
            "event": "ragprod.resilience.breaker_transition",
            "breaker": "upstream",
            "from_state": "closed",
            "to_state": "open",
            "log_level": "info",
        }
    ]


def test_half_open_admits_exactly_n_of_64_threads(clock: FakeClock) -> None:
    """64 threads racing into a half-open breaker: exactly half_open_calls get through."""
    breaker = open_breaker(clock, half_open_calls=3)
    n = 64
    barrier = threading.Barrier(n)
    lock = threading.Lock()
    decided: list[str] = []
    all_decided = threading.Event()
    release = threading.Event()

    def note(outcome: str) -> None:
        with lock:
            decided.append(outcome)
            if len(decided) == n:
                all_decided.set()

    def worker() -> None:
        barrier.wait()
        try:
            with breaker.guard():
                note("admitted")
                release.wait(10)  # hold the permit until every thread has tried
        except CircuitOpenError:
            note("rejected")

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    assert all_decided.wait(10)
    release.set()
    for t in threads:
        t.join()
    assert decided.count("admitted") == 3
    assert decided.count("rejected") == 61
    assert breaker.state is BreakerState.CLOSED


def test_half_open_admits_exactly_n_of_64_tasks(clock: FakeClock) -> None:
    """64 asyncio tasks racing into a half-open breaker: exactly half_open_calls get through."""
    breaker = open_breaker(clock, half_open_calls=3)

    async def main() -> list[str]:
        gate = asyncio.Event()

        async def enter() -> str:
            try:
                with breaker.guard():
                    await gate.wait()
                    return "admitted"
            except CircuitOpenError:
                return "rejected"

        tasks = [asyncio.create_task(enter()) for _ in range(64)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gate.set()
        return list(await asyncio.gather(*tasks))

    outcomes = asyncio.run(main())
    assert outcomes.count("admitted") == 3
    assert outcomes.count("rejected") == 61
    assert breaker.state is BreakerState.CLOSED


def test_cancelled_half_open_task_releases_its_permit(clock: FakeClock) -> None:
    """A trial task cancelled mid-call gives its permit back; the breaker stays half-open."""
    breaker = open_breaker(clock, half_open_calls=1)

    async def main() -> None:
        started = asyncio.Event()

        async def trial() -> None:
            with breaker.guard():
                started.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(trial())
        await started.wait()
        with pytest.raises(CircuitOpenError):
            ok(breaker)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert breaker.state is BreakerState.HALF_OPEN
        ok(breaker)

    asyncio.run(main())
    assert breaker.state is BreakerState.CLOSED


def test_no_lock_is_held_during_the_call(clock: FakeClock) -> None:
    """A call blocked inside the breaker does not block other callers (no lock around the call)."""
    breaker = make(clock)
    inside = threading.Event()
    leave = threading.Event()

    def slow() -> None:
        with breaker.guard():
            inside.set()
            leave.wait(5)

    t = threading.Thread(target=slow)
    t.start()
    inside.wait(5)
    done = threading.Event()

    def quick() -> None:
        ok(breaker)
        done.set()

    q = threading.Thread(target=quick)
    q.start()
    assert done.wait(5)
    leave.set()
    t.join()
    q.join()
