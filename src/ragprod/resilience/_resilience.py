"""``Resilience``: rate limit, bulkhead, breaker, retry and timeout, composed in that order."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, TypeVar, cast

from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.schema import QueryBundle

from ragprod._pipeline import AsyncNext, SyncNext
from ragprod.errors import UpstreamUnavailableError
from ragprod.metrics import RagMetrics
from ragprod.resilience._breaker import CircuitBreaker
from ragprod.resilience._fallback import CURRENT_KEY, LastGoodAnswer
from ragprod.resilience._limits import Bulkhead, Timeout
from ragprod.resilience._predicates import RETRYABLE, on
from ragprod.resilience._ratelimit import RateLimiter
from ragprod.resilience._retry import RetryPolicy
from ragprod.resilience._signals import Signals, log, span_event

__all__ = ["FALLBACK_ON", "Resilience", "ResilienceStep"]

P = ParamSpec("P")
T = TypeVar("T")

#: When a fallback answers by default: the call was refused or did not finish
#: (``UpstreamUnavailableError``), or it failed with a retryable error after
#: the retries. Client errors (a bad request) still raise.
FALLBACK_ON = on(UpstreamUnavailableError) | RETRYABLE

Fallback = str | Callable[[BaseException], Any]

_MIN_BUDGET = 0.001  # the shortest timeout an attempt gets when the deadline is nearly spent


class Resilience:
    """Failure isolation for one upstream, in a fixed order.

    A call passes, outermost first: the rate limiter (refuses with
    ``RateLimitedError``), the bulkhead (``BulkheadFullError``), the circuit
    breaker (``CircuitOpenError``), then the retry policy, which runs each
    attempt under the timeout (``UpstreamTimeoutError``). The breaker sees one
    outcome per call, after the retries. With a retry ``deadline``, each
    attempt's timeout is cut to what is left of it. If the call still fails and a
    ``fallback`` is set, errors matching ``fallback_on`` are answered by it: a
    static text (e.g. "The service is degraded, please try again"), a
    function of the exception, or a :class:`LastGoodAnswer` (on a query
    engine: the last successful answer to the same query).

    Each argument takes ``True`` (defaults), a configured object, a number
    (``timeout=10`` seconds, ``bulkhead=16`` slots) or ``None``/``False`` (off).

    Args:
        breaker: a :class:`CircuitBreaker` (default: resilience4j defaults).
        retry: a :class:`RetryPolicy` (default: 3 attempts, 0.1-5 s backoff).
        timeout: a :class:`Timeout` or seconds (default 60 s per attempt).
        bulkhead: a :class:`Bulkhead` or slots (default 64, no waiting).
        rate_limiter: a :class:`RateLimiter` (default: off).
        fallback: a static answer or ``fn(exc) -> answer`` (default: off).
        fallback_on: which errors the fallback answers (default :data:`FALLBACK_ON`).
        name: names the components built from defaults (metrics, errors, logs).
        metrics: where every component emits (a private registry by default).

    Example:
        >>> from ragprod.testing import FaultyQueryEngine
        >>> r = Resilience(retry=False, timeout=None, fallback="degraded, try again")
        >>> engine = r.wrap(FaultyQueryEngine(fail_always=ConnectionError("down")))
        >>> str(engine.query("q"))
        'degraded, try again'
    """

    def __init__(
        self,
        breaker: CircuitBreaker | bool | None = True,
        retry: RetryPolicy | bool | None = True,
        timeout: Timeout | float | bool | None = 60.0,
        bulkhead: Bulkhead | int | bool | None = 64,
        rate_limiter: RateLimiter | None = None,
        fallback: Fallback | None = None,
        *,
        fallback_on: Callable[[BaseException], bool] = FALLBACK_ON,
        name: str = "default",
        metrics: RagMetrics | None = None,
    ) -> None:
        self.name = name
        self.breaker = CircuitBreaker(name) if breaker is True else (breaker or None)
        self.retry = RetryPolicy(name=name) if retry is True else (retry or None)
        if timeout is True:
            timeout = 60.0
        self.timeout = (
            Timeout(float(timeout), name=name)
            if isinstance(timeout, (int, float)) and timeout is not False
            else (timeout or None)
        )
        if bulkhead is True:
            bulkhead = 64
        self.bulkhead = (
            Bulkhead(bulkhead, name=name)
            if isinstance(bulkhead, int) and bulkhead is not False
            else (bulkhead or None)
        )
        self.rate_limiter = rate_limiter
        self.fallback = fallback
        self.fallback_on = fallback_on
        self.bind_metrics(metrics or RagMetrics())

    @property
    def components(self) -> list[Any]:
        """The enabled components, outermost first."""
        parts = [self.rate_limiter, self.bulkhead, self.breaker, self.retry, self.timeout]
        return [p for p in parts if p is not None]

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Make every component emit on ``metrics``."""
        self.metrics = metrics
        self.signals = Signals(metrics)
        self._m_fallbacks = self.signals.fallbacks.labels(upstream=self.name)
        for component in self.components:
            component.bind_metrics(metrics)

    # -- the call, sync and async (the same order; only awaiting differs) ---

    def _answer(self, exc: Exception, adapt: Callable[[Any], Any] | None) -> Any:
        """The fallback's answer to ``exc``, or re-raise it."""
        if self.fallback is None or not self.fallback_on(exc):
            raise exc
        self._m_fallbacks.inc()
        fields = {"name": self.name, "error": type(exc).__name__}
        log.info("ragprod.resilience.fallback", **fields)
        span_event("ragprod.resilience.fallback", fields)
        answer = self.fallback if isinstance(self.fallback, str) else self.fallback(exc)
        return adapt(answer) if adapt is not None else answer

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` through every enabled component (see the class docs)."""
        return self.call_adapted(None, fn, *args, **kwargs)

    def call_adapted(
        self,
        adapt: Callable[[Any], T] | None,
        fn: Callable[P, T],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """:meth:`call`, passing a fallback's answer through ``adapt`` (e.g. text to a
        ``CompletionResponse``) so callers always get ``fn``'s return type."""
        try:
            if self.rate_limiter is not None:
                self.rate_limiter.acquire()
            bulkhead = self.bulkhead
            if bulkhead is not None:
                bulkhead.acquire()
            try:
                if self.breaker is not None:
                    with self.breaker.guard():
                        return self._retried(fn, *args, **kwargs)
                return self._retried(fn, *args, **kwargs)
            finally:
                if bulkhead is not None:
                    bulkhead.release()
        except Exception as exc:
            answer: T = self._answer(exc, adapt)
            return answer

    def _retried(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        timeout, retry = self.timeout, self.retry
        if timeout is not None:
            if retry is not None:
                if retry.deadline is None:
                    return retry.call(timeout.call, fn, *args, **kwargs)
                end = retry.clock() + retry.deadline

                def attempt() -> T:  # each attempt gets the timeout or what is left, if less
                    budget = max(_MIN_BUDGET, min(timeout.seconds, end - retry.clock()))
                    return timeout.call_within(budget, fn, *args, **kwargs)

                return retry.call(attempt)
            return timeout.call(fn, *args, **kwargs)
        if self.retry is not None:
            return self.retry.call(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def acall(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Await ``fn`` through every enabled component (``await r.acall(fn, ...)``)."""
        # a plain function returning the coroutine: one coroutine frame fewer per call
        return self.acall_adapted(None, fn, *args, **kwargs)

    async def acall_adapted(
        self,
        adapt: Callable[[Any], T] | None,
        fn: Callable[P, Awaitable[T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Async :meth:`call_adapted` (an awaitable fallback answer is awaited)."""
        try:
            if self.rate_limiter is not None:
                self.rate_limiter.acquire()
            bulkhead = self.bulkhead
            # try_acquire first: the common case costs no coroutine
            if bulkhead is not None and not bulkhead.try_acquire():
                await bulkhead.aacquire()
            try:
                if self.breaker is not None:
                    with self.breaker.guard():
                        return await self._aretried(fn, *args, **kwargs)
                return await self._aretried(fn, *args, **kwargs)
            finally:
                if bulkhead is not None:
                    bulkhead.release()
        except Exception as exc:
            answer = self._answer(exc, None)
            if inspect.isawaitable(answer):
                answer = await answer
            result: T = adapt(answer) if adapt is not None else answer
            return result

    def _aretried(
        self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Awaitable[T]:
        # returns the awaitable (no coroutine frame of its own); call it inside the guard
        timeout, retry = self.timeout, self.retry
        if timeout is not None:
            if retry is not None:
                if retry.deadline is None:
                    return retry.acall(timeout.acall, fn, *args, **kwargs)
                end = retry.clock() + retry.deadline

                def attempt() -> Awaitable[T]:
                    budget = max(_MIN_BUDGET, min(timeout.seconds, end - retry.clock()))
                    return timeout.acall_within(budget, fn, *args, **kwargs)

                return retry.acall(attempt)
            return timeout.acall(fn, *args, **kwargs)
        if self.retry is not None:
            return self.retry.acall(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    # -- streams -------------------------------------------------------------

    def watch(self, gen: Iterator[T]) -> Iterator[T]:
        """Pass ``gen`` through, reporting a mid-stream failure to the breaker."""
        try:
            yield from gen
        except Exception as exc:
            if self.breaker is not None:
                self.breaker.record_failure(exc)
            raise

    async def awatch(self, agen: AsyncIterator[T]) -> AsyncIterator[T]:
        """Async :meth:`watch`."""
        try:
            async for item in agen:
                yield item
        except Exception as exc:
            if self.breaker is not None:
                self.breaker.record_failure(exc)
            raise

    def wrap(self, engine: Any) -> Any:
        """A ``ResilientQueryEngine`` running ``engine`` under this configuration."""
        from ragprod.resilience._wrappers import ResilientQueryEngine

        return ResilientQueryEngine(engine, self)

    def __repr__(self) -> str:
        parts = ", ".join(type(c).__name__ for c in self.components)
        fb = ", fallback" if self.fallback is not None else ""
        return f"Resilience({self.name!r}: {parts}{fb})"


def _as_response(value: Any) -> RESPONSE_TYPE:
    if isinstance(value, (Response, StreamingResponse, AsyncStreamingResponse)):
        return value
    return Response(response=str(value), metadata={"ragprod_fallback": True})


def _remember(memo: LastGoodAnswer, query: QueryBundle, response: Any) -> Any:
    """Keep a successful, complete response as the query's last good answer."""
    if isinstance(response, Response) and not (response.metadata or {}).get("ragprod_fallback"):
        memo.remember(query.query_str, response)
    return response


class ResilienceStep:
    """The query step of :class:`Resilience`: guards the rest of the chain.

    Streaming responses pass through; a stream that breaks mid-way is
    counted as a breaker failure. A fallback answer becomes a ``Response``
    with ``metadata["ragprod_fallback"] = True``.
    """

    name = "resilience"

    def __init__(self, resilience: Resilience) -> None:
        self.resilience = resilience

    def _post(self, response: Any) -> RESPONSE_TYPE:
        r = self.resilience
        if r.breaker is not None:
            if isinstance(response, StreamingResponse) and response.response_gen is not None:
                response.response_gen = cast(Any, r.watch(response.response_gen))
            elif isinstance(response, AsyncStreamingResponse):
                response.response_gen = cast(Any, r.awatch(response.response_gen))
        return _as_response(response)

    def handle(self, query: QueryBundle, call_next: SyncNext) -> RESPONSE_TYPE:
        """Run the rest of the chain under the resilience policy."""
        memo = self.resilience.fallback
        if not isinstance(memo, LastGoodAnswer):
            return self._post(self.resilience.call(call_next, query))
        token = CURRENT_KEY.set(query.query_str)
        try:
            response = self.resilience.call(call_next, query)
        finally:
            CURRENT_KEY.reset(token)
        return self._post(_remember(memo, query, response))

    async def ahandle(self, query: QueryBundle, call_next: AsyncNext) -> RESPONSE_TYPE:
        """Run the rest of the chain under the resilience policy, in the event loop."""
        memo = self.resilience.fallback
        if not isinstance(memo, LastGoodAnswer):
            return self._post(await self.resilience.acall(call_next, query))
        token = CURRENT_KEY.set(query.query_str)
        try:
            response = await self.resilience.acall(call_next, query)
        finally:
            CURRENT_KEY.reset(token)
        return self._post(_remember(memo, query, response))

    def __repr__(self) -> str:
        return f"ResilienceStep({self.resilience!r})"
