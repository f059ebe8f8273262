"""``RetryPolicy``: tenacity retries with a fast path for calls that succeed."""

from __future__ import annotations

import asyncio
import functools
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

import tenacity
from tenacity import AsyncRetrying, RetryCallState, Retrying, retry_if_exception

from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics
from ragprod.resilience._decorate import wrap_async
from ragprod.resilience._mode import TEST_MODE
from ragprod.resilience._predicates import RETRYABLE, retry_after_of
from ragprod.resilience._signals import Signals, log, span_event

__all__ = ["Attempt", "RetryPolicy"]

P = ParamSpec("P")
T = TypeVar("T")


class Attempt:
    """The first attempt of a retry loop: ``with attempt:`` records its outcome.

    Later attempts are tenacity's own ``AttemptManager`` objects, which behave
    the same way.
    """

    __slots__ = ("_policy", "exception", "retry_state")

    def __init__(self, policy: RetryPolicy) -> None:
        self._policy = policy
        self.exception: BaseException | None = None
        self.retry_state = None

    @property
    def number(self) -> int:
        """1: this is always the first attempt."""
        return 1

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc is not None and self._policy._will_retry(exc):
            self.exception = exc
            return True  # swallowed: the loop goes on to tenacity
        return False


class RetryPolicy:
    """Retry transient failures with exponential backoff and full jitter, on tenacity.

    The first attempt runs without tenacity (a ``try``), so a call that
    succeeds costs a fraction of a microsecond; only after a retryable
    exception does tenacity take over, with that failure counted as attempt 1.

    What is retried is decided by ``retry_on`` (default :data:`RETRYABLE`:
    connection errors, timeouts, rate limits and 5xx-like provider errors;
    never 4xx client/auth errors, ``CircuitOpenError``, ``QueryRejectedError``
    or ``CancelledError``: tenacity alone would retry a cancelled task, tenacity
    #529). The wait before attempt ``n + 1`` is uniform in
    ``[0, min(maximum, initial * 2 ** (n - 1))]`` (full jitter; without jitter,
    the upper bound itself), and at least the Retry-After an exception
    carries. No retry is started that would end after ``deadline`` seconds
    from the first attempt. When it gives up, the last original exception is
    re-raised (never ``tenacity.RetryError``).

    Use it four ways: ``policy.call(fn, ...)``, ``await policy.acall(afn, ...)``,
    as a decorator on sync or async functions, or as an iterable of attempts::

        for attempt in policy:
            with attempt:
                answer = llm.complete(prompt)

        async for attempt in policy:
            with attempt:
                answer = await llm.acomplete(prompt)

    Under ``ragprod.testing.test_mode()`` nothing waits.

    Args:
        attempts: total attempts, the first included (1 disables retrying).
        initial: the first backoff ceiling, in seconds.
        maximum: the largest backoff, in seconds.
        jitter: draw each wait uniformly below its ceiling (full jitter).
        deadline: seconds from the first attempt after which no retry starts.
        retry_on: which exceptions to retry (an :class:`ErrorPredicate` or any
            callable).
        name: the protected resource, for metrics and logs.
        clock: monotonic time, for the deadline.
        sleep: blocking sleep between sync attempts.
        asleep: async sleep between async attempts.
        rng: ``random.Random`` for the jitter (seed it in tests).
        metrics: where to count retries.

    Raises:
        ConfigurationError: an argument is out of range.

    Example:
        >>> from ragprod.testing import FakeClock
        >>> clock = FakeClock()
        >>> policy = RetryPolicy(attempts=3, clock=clock, sleep=clock.sleep)
        >>> calls = []
        >>> def flaky():
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("reset")
        ...     return "ok"
        >>> policy.call(flaky), len(calls)
        ('ok', 3)
    """

    def __init__(
        self,
        attempts: int = 3,
        initial: float = 0.1,
        maximum: float = 5.0,
        jitter: bool = True,
        deadline: float | None = None,
        retry_on: Callable[[BaseException], bool] = RETRYABLE,
        *,
        name: str = "default",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        rng: random.Random | None = None,
        metrics: RagMetrics | None = None,
    ) -> None:
        problems = []
        if attempts < 1:
            problems.append("attempts must be at least 1")
        if initial < 0 or maximum < 0:
            problems.append("initial and maximum must not be negative")
        if deadline is not None and deadline <= 0:
            problems.append("deadline must be positive")
        if problems:
            raise ConfigurationError(problems)
        self.attempts = attempts
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.deadline = deadline
        self.retry_on = retry_on
        self.name = name
        self._clock = clock
        self._sleep = sleep
        self._asleep = asleep
        self._rng = rng or random.Random()
        self.bind_metrics(metrics or RagMetrics())

    @property
    def clock(self) -> Callable[[], float]:
        """The clock the deadline is measured with."""
        return self._clock

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count retries on ``metrics`` from now on."""
        self.signals = Signals(metrics)
        self._m_retries = self.signals.retries.labels(upstream=self.name)

    # -- decisions -----------------------------------------------------------

    def _max_attempts(self) -> int:
        cap = TEST_MODE.attempts if TEST_MODE.active else None
        return min(self.attempts, cap) if cap else self.attempts

    def _will_retry(self, exc: BaseException) -> bool:
        return isinstance(exc, Exception) and self._max_attempts() > 1 and bool(self.retry_on(exc))

    def backoff(self, attempt: int, exc: BaseException | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if TEST_MODE.active:
            return 0.0
        ceiling = min(self.maximum, self.initial * 2 ** (attempt - 1))
        wait = self._rng.uniform(0.0, ceiling) if self.jitter else ceiling
        hint = retry_after_of(exc) if exc is not None else None
        return max(wait, hint) if hint is not None else wait

    def _tenacity(self, kind: type[Retrying] | type[AsyncRetrying], t0: float) -> Any:
        attempts = self._max_attempts()
        deadline = self.deadline

        def wait(rs: RetryCallState) -> float:
            exc = rs.outcome.exception() if rs.outcome is not None else None
            return self.backoff(rs.attempt_number, exc)

        def stop(rs: RetryCallState) -> bool:
            if rs.attempt_number >= attempts:
                return True
            return deadline is not None and self._clock() - t0 + rs.upcoming_sleep > deadline

        def before_sleep(rs: RetryCallState) -> None:
            self._m_retries.inc()
            exc = rs.outcome.exception() if rs.outcome is not None else None
            fields = {
                "name": self.name,
                "attempt": rs.attempt_number,
                "wait": round(rs.upcoming_sleep, 4),
                "error": type(exc).__name__,
            }
            log.info("ragprod.resilience.retry", **fields)
            span_event("ragprod.resilience.retry", fields)

        if kind is AsyncRetrying:
            return AsyncRetrying(
                sleep=self._asleep,
                stop=stop,
                wait=wait,
                retry=retry_if_exception(self._will_retry),
                before_sleep=before_sleep,
                reraise=True,
            )
        return Retrying(
            sleep=self._sleep,
            stop=stop,
            wait=wait,
            retry=retry_if_exception(self._will_retry),
            before_sleep=before_sleep,
            reraise=True,
        )

    def _start(self) -> float:
        return self._clock() if self.deadline is not None else 0.0

    # -- calling -------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` and retry it per this policy; re-raises the last exception."""
        t0 = self._start()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not self._will_retry(exc):
                raise
            first: list[BaseException] = [exc]

        def attempt() -> T:
            if first:
                raise first.pop()
            return fn(*args, **kwargs)

        result: T = self._tenacity(Retrying, t0)(attempt)
        return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` and retry it per this policy; never retries a cancellation."""
        t0 = self._start()
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            if not self._will_retry(exc):
                raise
            first: list[BaseException] = [exc]

        async def attempt() -> T:
            if first:
                raise first.pop()
            return await fn(*args, **kwargs)

        result: T = await self._tenacity(AsyncRetrying, t0)(attempt)
        return result

    def __iter__(self) -> Iterator[Attempt | tenacity.AttemptManager]:
        t0 = self._start()
        first = Attempt(self)
        yield first
        if first.exception is None:
            return
        replay = True
        for manager in self._tenacity(Retrying, t0):
            if replay:
                replay = False
                with manager:
                    raise first.exception
                continue
            yield manager

    async def __aiter__(self) -> AsyncIterator[Attempt | tenacity.AttemptManager]:
        t0 = self._start()
        first = Attempt(self)
        yield first
        if first.exception is None:
            return
        replay = True
        async for manager in self._tenacity(AsyncRetrying, t0):
            if replay:
                replay = False
                with manager:
                    raise first.exception
                continue
            yield manager

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Use the policy as a decorator on a sync or async function."""
        async_wrapper = wrap_async(self.acall, fn)
        if async_wrapper is not None:
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            return self.call(fn, *args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(attempts={self.attempts}, initial={self.initial}, "
            f"maximum={self.maximum}, deadline={self.deadline})"
        )
