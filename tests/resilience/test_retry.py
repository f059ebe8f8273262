"""RetryPolicy: what is retried, how long it waits, what it re-raises."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from structlog.testing import capture_logs

from ragprod.errors import (
    CircuitOpenError,
    ConfigurationError,
    QueryRejectedError,
    RateLimitedError,
    UpstreamTimeoutError,
)
from ragprod.metrics import RagMetrics
from ragprod.resilience import RETRYABLE, RetryPolicy, on, retry_after_of
from ragprod.testing import FakeClock, test_mode


class HTTPError(Exception):
    """A provider error carrying an HTTP status, like openai's or httpx's."""

    def __init__(self, status_code: int, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status_code}")
        self.status_code = status_code
        headers = {"retry-after": retry_after} if retry_after else {}
        self.response = type("R", (), {"headers": headers, "status_code": status_code})()


class APIConnectionError(Exception):
    """Named like openai's connection error (matched by class name)."""


class Script:
    """A callable failing with the given exceptions, then returning 'ok'."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"

    async def acall(self) -> str:
        await asyncio.sleep(0)
        return self()


def policy(clock: FakeClock, **kw: Any) -> RetryPolicy:
    return RetryPolicy(clock=clock, sleep=clock.sleep, asleep=clock.asleep, **kw)


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionResetError(),
        TimeoutError(),
        HTTPError(503),
        HTTPError(429),
        HTTPError(408),
        APIConnectionError(),
        RateLimitedError("llm", retry_after=1.0),
        UpstreamTimeoutError("llm", timeout=1.0),
    ],
)
def test_transient_errors_are_retried(clock: FakeClock, exc: BaseException) -> None:
    """Connection errors, timeouts, rate limits and 5xx-like errors are retried."""
    script = Script(exc)
    assert policy(clock).call(script) == "ok"
    assert script.calls == 2


@pytest.mark.parametrize(
    "exc",
    [
        HTTPError(400),
        HTTPError(401),
        HTTPError(404),
        ValueError("bad"),
        CircuitOpenError("llm", retry_after=3.0),
        QueryRejectedError("empty"),
    ],
)
def test_client_errors_are_not_retried(clock: FakeClock, exc: BaseException) -> None:
    """4xx client/auth errors, bugs, open breakers and rejected queries fail on the first try."""
    script = Script(exc)
    with pytest.raises(type(exc)) as info:
        policy(clock).call(script)
    assert info.value is exc
    assert script.calls == 1
    assert clock.sleeps == []


def test_cancellation_is_never_retried(clock: FakeClock) -> None:
    """CancelledError propagates at once, unlike plain tenacity (tenacity #529)."""
    script = Script(asyncio.CancelledError())

    async def main() -> None:
        await policy(clock).acall(script.acall)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())
    assert script.calls == 1
    assert not RETRYABLE(asyncio.CancelledError())


def test_gives_up_and_reraises_the_last_original_exception(clock: FakeClock) -> None:
    """After the last attempt the last exception itself is raised, not tenacity.RetryError."""
    errors = [ConnectionError("1"), ConnectionError("2"), ConnectionError("3")]
    script = Script(*errors)
    with pytest.raises(ConnectionError) as info:
        policy(clock, attempts=3).call(script)
    assert info.value is errors[2]
    assert script.calls == 3


def test_backoff_is_exponential_with_full_jitter_and_capped(clock: FakeClock) -> None:
    """Wait n is uniform below min(maximum, initial * 2**(n-1)); without jitter, that ceiling."""
    exact = policy(clock, initial=1.0, maximum=5.0, jitter=False)
    assert [exact.backoff(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = policy(clock, initial=1.0, maximum=5.0, rng=random.Random(7))
    waits = [jittered.backoff(n) for n in range(1, 6)]
    assert all(0 <= w <= c for w, c in zip(waits, [1, 2, 4, 5, 5], strict=True))


@given(attempt=st.integers(1, 40), initial=st.floats(0, 10), maximum=st.floats(0, 60))
def test_backoff_never_exceeds_the_ceiling(attempt: int, initial: float, maximum: float) -> None:
    """For any attempt and settings the wait is in [0, min(maximum, initial * 2**(n-1))]."""
    p = RetryPolicy(initial=initial, maximum=maximum, rng=random.Random(0))
    assert 0 <= p.backoff(attempt) <= min(maximum, initial * 2 ** (attempt - 1))


def test_retry_after_is_honoured(clock: FakeClock) -> None:
    """A Retry-After carried by the error (attribute or HTTP header) is the minimum wait."""
    script = Script(RateLimitedError("llm", retry_after=7.0), HTTPError(503, retry_after="4"))
    assert policy(clock, initial=0.01).call(script) == "ok"
    assert clock.sleeps[0] == 7.0
    assert clock.sleeps[1] == 4.0
    assert retry_after_of(HTTPError(503, retry_after="soon")) is None


def test_deadline_stops_retries_that_would_end_too_late(clock: FakeClock) -> None:
    """No retry starts whose wait would pass the total deadline; the last error is raised."""
    script = Script(*(ConnectionError(str(i)) for i in range(10)))
    p = policy(clock, attempts=10, initial=1.0, maximum=1.0, jitter=False, deadline=3.5)
    with pytest.raises(ConnectionError):
        p.call(script)
    assert script.calls == 4  # attempts at t=0, 1, 2, 3; the next would start at 4 > 3.5
    assert sum(clock.sleeps) <= 3.5


def test_first_try_success_does_not_enter_tenacity(clock: FakeClock) -> None:
    """A call that succeeds at once neither sleeps nor counts a retry."""
    metrics = RagMetrics()
    p = policy(clock, metrics=metrics, name="llm")
    assert p.call(lambda: 42) == 42
    assert clock.sleeps == []
    assert metrics.value("ragprod_resilience_retries_total", upstream="llm") == 0.0


def test_retries_emit_metric_and_log(clock: FakeClock) -> None:
    """Each scheduled retry counts ragprod_resilience_retries_total and logs a retry event."""
    metrics = RagMetrics()
    p = policy(clock, metrics=metrics, name="llm")
    with capture_logs() as logs:
        p.call(Script(ConnectionError(), ConnectionError()))
    assert metrics.value("ragprod_resilience_retries_total", upstream="llm") == 2.0
    events = [e for e in logs if e["event"] == "ragprod.resilience.retry"]
    assert [e["attempt"] for e in events] == [1, 2]
    assert events[0]["error"] == "ConnectionError"


def test_iterable_of_attempts_sync(clock: FakeClock) -> None:
    """``for attempt in policy: with attempt:`` retries the block."""
    script = Script(ConnectionError(), TimeoutError())
    for attempt in policy(clock):
        with attempt:
            result = script()
    assert result == "ok"
    assert script.calls == 3


def test_iterable_of_attempts_async(clock: FakeClock) -> None:
    """``async for attempt in policy: with attempt:`` retries the block in the event loop."""
    script = Script(ConnectionError())

    async def main() -> str:
        async for attempt in policy(clock):
            with attempt:
                result = await script.acall()
        return result

    assert asyncio.run(main()) == "ok"
    assert script.calls == 2


def test_iterable_reraises_non_retryable_and_exhausted(clock: FakeClock) -> None:
    """The attempt loop raises a client error at once and the last error when exhausted."""
    with pytest.raises(ValueError, match="bug"):
        for attempt in policy(clock):
            with attempt:
                raise ValueError("bug")
    calls = 0
    with pytest.raises(ConnectionError):
        for attempt in policy(clock, attempts=2):
            with attempt:
                calls += 1
                raise ConnectionError(str(calls))
    assert calls == 2


def test_decorator_sync_and_async(clock: FakeClock) -> None:
    """The policy decorates sync and async functions."""
    p = policy(clock)
    sync_script, async_script = Script(ConnectionError()), Script(ConnectionError())

    @p
    def f() -> str:
        return sync_script()

    @p
    async def g() -> str:
        return await async_script.acall()

    assert f() == "ok"
    assert asyncio.run(g()) == "ok"


def test_test_mode_removes_waits_and_caps_attempts() -> None:
    """Under test_mode() nothing sleeps, and attempts= caps every policy."""
    slept: list[float] = []
    p = RetryPolicy(attempts=5, initial=10.0, sleep=slept.append)
    with test_mode():
        assert p.call(Script(ConnectionError(), ConnectionError())) == "ok"
    assert slept == [0.0, 0.0]
    script = Script(ConnectionError(), ConnectionError())
    with test_mode(attempts=1), pytest.raises(ConnectionError):
        p.call(script)
    assert script.calls == 1


def test_custom_retry_on_predicate(clock: FakeClock) -> None:
    """retry_on= replaces the classification (here: also retry KeyError)."""
    script = Script(KeyError("x"))
    assert policy(clock, retry_on=RETRYABLE | on(KeyError)).call(script) == "ok"


def test_bad_configuration() -> None:
    """Out-of-range arguments raise ConfigurationError."""
    with pytest.raises(ConfigurationError):
        RetryPolicy(attempts=0, deadline=-1)
