"""``CircuitBreaker``: resilience4j's state machine, lock-free around the call."""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from opentelemetry.trace import get_current_span as _current_span

from ragprod.errors import CircuitOpenError, ConfigurationError
from ragprod.metrics import RagMetrics
from ragprod.resilience._decorate import wrap_async
from ragprod.resilience._shared import SharedStateMixin
from ragprod.resilience._signals import Signals, log, span_event
from ragprod.resilience._state import (
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    BreakerState,
    open_error,
)
from ragprod.resilience._window import FAILURE, SLOW, CountWindow, TimeWindow

if TYPE_CHECKING:
    from ragprod.resilience._store import RedisBreakerStore

__all__ = ["BreakerState", "CircuitBreaker", "open_error"]

P = ParamSpec("P")
T = TypeVar("T")

_OUTCOMES = ("success", "failure", "slow_success", "slow_failure")


def _never(exc: BaseException) -> bool:
    return False


class _Guard:
    """One call through a breaker: acquire on enter, record the outcome on exit."""

    __slots__ = ("_b", "_gen", "_shared", "_start", "_trial")

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._b = breaker

    def __enter__(self) -> _Guard:
        b = self._b
        if b._state is CLOSED and b._store is None:
            self._gen = b._gen
            self._trial = False
            self._shared = False
        elif b._state is CLOSED and b._in_sync():
            self._gen = b._gen  # shared state, CLOSED and recently synced: no round trip
            self._trial = False
            self._shared = True
        else:
            self._gen, self._trial, self._shared = b._acquire()
        self._start = b._clock() if b._timed else 0.0
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        b = self._b
        if exc is None and not (self._trial or b._timed):
            if self._shared:
                b._shared_success(self._gen)
            else:
                b._success(self._gen)
        else:
            b._finish(self._gen, self._trial, self._shared, self._start, exc)

    async def __aenter__(self) -> _Guard:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)


class CircuitBreaker(SharedStateMixin):
    """A circuit breaker with resilience4j's semantics.

    While CLOSED, outcomes go into a sliding window: the last ``window_size``
    calls, or the last ``window_duration`` seconds. Once the window holds at
    least ``minimum_calls`` outcomes and the failure rate reaches
    ``failure_rate_threshold`` (or the share of calls slower than
    ``slow_call_duration`` reaches ``slow_call_rate_threshold``), the breaker
    OPENs and rejects calls with :class:`~ragprod.errors.CircuitOpenError`
    (``retry_after`` = seconds until it may half-open). After ``open_duration``
    the next call moves it to HALF_OPEN, where exactly ``half_open_calls`` trial
    calls are admitted, however many threads or tasks are waiting; the rest are
    rejected at once. When all trials have finished, their failure and slow
    rates decide: CLOSED again, or OPEN for another ``open_duration``.

    No lock is held while the protected call runs: admission and recording
    each take a short lock. Outcomes are classified as follows: an exception
    matching ``ignore`` is neither success nor failure; one matching ``record``
    (default: any ``Exception``) is a failure; any other is a success.
    ``CancelledError``, ``KeyboardInterrupt``, ``GeneratorExit`` and
    ``SystemExit`` are never counted, and a cancelled half-open trial gives its
    permit back. Outcomes of calls admitted before a state change are dropped.

    Operators can :meth:`disable` (let everything through, record nothing),
    :meth:`force_open` (reject everything) and :meth:`reset` (back to CLOSED).

    Args:
        name: the protected resource; appears in errors, metrics and logs.
        failure_rate_threshold: failure share (0-1] that opens the breaker.
        slow_call_rate_threshold: slow-call share (0-1] that opens the breaker.
        slow_call_duration: seconds from which a call counts as slow (``None``:
            never slow, and the clock is not read on the fast path).
        minimum_calls: outcomes needed before the rates are evaluated (capped
            at ``window_size`` for a count window).
        window_size: calls in a count-based window.
        window_duration: seconds in a time-based window (overrides ``window_size``).
        open_duration: seconds to stay OPEN before half-opening.
        half_open_calls: trial calls admitted in HALF_OPEN.
        record: which exceptions are failures (default: every ``Exception``).
        ignore: which exceptions are neither success nor failure.
        clock: monotonic time in seconds (inject a ``FakeClock`` in tests).
        store: a :class:`RedisBreakerStore` to share the state across processes.
        metrics: where to emit metrics (a private registry by default).

    Raises:
        ConfigurationError: an argument is out of range.

    Example:
        >>> from ragprod.testing import FakeClock
        >>> clock = FakeClock()
        >>> breaker = CircuitBreaker("llm", minimum_calls=2, window_size=4, clock=clock)
        >>> for _ in range(2):
        ...     try:
        ...         with breaker.guard():
        ...             raise ConnectionError("down")
        ...     except ConnectionError:
        ...         pass
        >>> breaker.state
        <BreakerState.OPEN: 'open'>
        >>> clock.advance(30)
        >>> with breaker.guard():
        ...     pass  # the first of 3 trial calls
        >>> breaker.state
        <BreakerState.HALF_OPEN: 'half_open'>
    """

    def __init__(
        self,
        name: str = "default",
        *,
        failure_rate_threshold: float = 0.5,
        slow_call_rate_threshold: float = 1.0,
        slow_call_duration: float | None = None,
        minimum_calls: int = 10,
        window_size: int = 100,
        window_duration: float | None = None,
        open_duration: float = 30.0,
        half_open_calls: int = 3,
        record: Callable[[BaseException], bool] | None = None,
        ignore: Callable[[BaseException], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: RedisBreakerStore | None = None,
        metrics: RagMetrics | None = None,
    ) -> None:
        problems = []
        if not 0 < failure_rate_threshold <= 1:
            problems.append("failure_rate_threshold must be in (0, 1]")
        if not 0 < slow_call_rate_threshold <= 1:
            problems.append("slow_call_rate_threshold must be in (0, 1]")
        if slow_call_duration is not None and slow_call_duration <= 0:
            problems.append("slow_call_duration must be positive")
        if minimum_calls < 1:
            problems.append("minimum_calls must be at least 1")
        if window_size < 1:
            problems.append("window_size must be at least 1")
        if window_duration is not None and window_duration <= 0:
            problems.append("window_duration must be positive")
        if open_duration < 0:
            problems.append("open_duration must not be negative")
        if half_open_calls < 1:
            problems.append("half_open_calls must be at least 1")
        if problems:
            raise ConfigurationError(problems)
        self.name = name
        self.failure_rate_threshold = failure_rate_threshold
        self.slow_call_rate_threshold = slow_call_rate_threshold
        self.slow_call_duration = slow_call_duration
        self.window_size = window_size
        self.window_duration = window_duration
        self.minimum_calls = minimum_calls if window_duration else min(minimum_calls, window_size)
        self.open_duration = open_duration
        self.half_open_calls = half_open_calls
        self._record = record or (lambda e: isinstance(e, Exception))
        self._ignore = ignore or _never
        self._clock = clock
        self._timed = slow_call_duration is not None or window_duration is not None
        self._window: CountWindow | TimeWindow = (
            TimeWindow(window_duration) if window_duration else CountWindow(window_size)
        )
        # the count window, typed, for the inlined success path (unused with a time window)
        self._ring = self._window if isinstance(self._window, CountWindow) else CountWindow(1)
        self._lock = threading.Lock()
        self._state = CLOSED
        self._gen = 0
        self._open_until = 0.0
        self._permits = 0
        self._trials = [0, 0, 0]  # finished trial calls, failures, slow
        self._ok = 0  # fast successes not yet added to the Prometheus counter
        self._rejections = itertools.count()  # next() per rejection (atomic in CPython)
        self._rejections_published = 0
        self._last_reject_log = -1e18
        self._store = store
        # shared-state bookkeeping (only used with a store)
        self._pending: list[str] = []
        self._next_sync = 0.0
        self._fresh = True
        self._deny_until = 0.0
        self._degraded_until: float | None = None
        self.bind_metrics(metrics or RagMetrics())

    # -- configuration -------------------------------------------------------

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Emit this breaker's metrics on ``metrics`` from now on."""
        self.signals = Signals(metrics)
        calls = self.signals.calls
        self._m_outcome = [calls.labels(breaker=self.name, outcome=o) for o in _OUTCOMES]
        self._m_ignored = calls.labels(breaker=self.name, outcome="ignored")
        self._m_cancelled = calls.labels(breaker=self.name, outcome="cancelled")
        self._m_rejected = calls.labels(breaker=self.name, outcome="rejected")
        self.signals.on_collect(self.flush_metrics)
        self.signals.set_state(self.name, self._state.value)

    @property
    def state(self) -> BreakerState:
        """The current state (OPEN stays OPEN until a call arrives after ``open_duration``)."""
        return self._state

    @property
    def retry_after(self) -> float | None:
        """Seconds until an OPEN breaker may half-open; ``None`` in other states."""
        if self._state is not OPEN:
            return None
        return max(0.0, self._open_until - self._clock())

    @property
    def degraded(self) -> bool:
        """True while the shared store is unreachable and local state is used."""
        return self._degraded_until is not None

    def metrics_snapshot(self) -> dict[str, int]:
        """The window's current ``calls``, ``failures`` and ``slow`` counts (local view)."""
        with self._lock:
            calls, failures, slow = self._window.totals(self._clock())
        return {"calls": calls, "failures": failures, "slow": slow}

    # -- operator transitions -----------------------------------------------

    def reset(self) -> None:
        """Go back to CLOSED with an empty window."""
        self._operator(CLOSED)

    def disable(self) -> None:
        """Let every call through and record nothing, until :meth:`reset`."""
        self._operator(DISABLED)

    def force_open(self) -> None:
        """Reject every call, until :meth:`reset`."""
        self._operator(FORCED_OPEN)

    def _operator(self, state: BreakerState) -> None:
        with self._lock:
            change = self._to(state, self._clock())
        self._emit(change)
        if self._store is not None:
            try:
                shared = self._store.set_state(self, state.value)
            except Exception as exc:  # redis errors: keep the local decision
                self._store_failed(exc)
            else:
                with self._lock:
                    self._gen = shared.gen

    # -- admission -----------------------------------------------------------

    def guard(self) -> _Guard:
        """A context manager around one protected call (``with`` or ``async with``).

        Raises:
            CircuitOpenError: on entry, when the breaker rejects the call.

        Example:
            >>> breaker = CircuitBreaker("search")
            >>> with breaker.guard():
            ...     result = 1 + 1
        """
        return _Guard(self)

    def _reject(self, retry_after: float | None) -> CircuitOpenError:
        next(self._rejections)
        span = _current_span()  # inlined span_event: this is the rejection hot path
        if span.is_recording():
            span.add_event("ragprod.resilience.rejected", {"breaker": self.name})
        now = time.monotonic()
        if now - self._last_reject_log >= 10.0:  # one log line per 10 s, not one per call
            self._last_reject_log = now
            log.info("ragprod.resilience.rejected", breaker=self.name, state=self._state.value)
        return open_error(self.name, retry_after)

    def _acquire(self) -> tuple[int, bool, bool]:
        """Admit a call or raise; returns ``(generation, is_trial, via_store)``."""
        now = self._clock()
        if self._store is not None and self._store_usable(now):
            try:
                return self._acquire_shared(now)
            except CircuitOpenError:
                raise
            except Exception as exc:  # redis errors: fall back to local state
                self._store_failed(exc)
        change = None
        retry_after: float | None = None
        gen: int | None = None
        with self._lock:
            state = self._state
            if state is CLOSED:
                return self._gen, False, False
            if state is DISABLED:
                return -1, False, False
            if state is OPEN:
                if now < self._open_until:
                    retry_after = self._open_until - now
                else:
                    change = self._to(HALF_OPEN, now)
                    state = HALF_OPEN
            if state is HALF_OPEN and self._permits > 0:
                self._permits -= 1
                gen = self._gen
        self._emit(change)
        if gen is None:
            raise self._reject(retry_after)
        return gen, True, False

    # -- recording -----------------------------------------------------------

    def _success(self, gen: int) -> None:
        """Record a fast success admitted in CLOSED (the hot path: no clock, no Prometheus).

        Only used without a clock (count window, no slow-call check); the ring
        update of ``CountWindow.add(0)`` is inlined, as it is most of the cost.
        """
        with self._lock:
            if gen == self._gen:
                w = self._ring
                ring = w.ring
                pos = w.pos
                old = ring[pos]
                ring[pos] = 0
                pos += 1
                w.pos = pos if pos < w.size else 0
                if old:
                    if old < 0:
                        w.calls += 1
                    else:
                        w.failures -= old & FAILURE
                        w.slow -= old >> 1
                ok = self._ok + 1
                self._ok = ok
                if ok >= 64:
                    self._flush_ok()

    def _flush_ok(self) -> None:
        """Publish buffered success counts to Prometheus (call with the lock held)."""
        ok, self._ok = self._ok, 0
        if ok:
            self._m_outcome[0].inc(ok)
        seen = next(self._rejections)  # itertools.count: lock-free on the rejection path
        rejected, self._rejections_published = seen - self._rejections_published, seen + 1
        if rejected:
            self._m_rejected.inc(rejected)

    def flush_metrics(self) -> None:
        """Publish buffered success counts now.

        Successes and rejections are counted in memory (a Prometheus increment
        would cost more than the rest of the call) and added to
        ``ragprod_resilience_breaker_calls_total`` every 64 successes and
        whenever the registry is collected (a scrape, or ``RagMetrics.value``);
        call this to publish them at another moment. In Prometheus
        multiprocess mode, where collection reads files, counts lag by at most
        64 successes.
        """
        with self._lock:
            self._flush_ok()

    def record_failure(self, exc: BaseException) -> None:
        """Count ``exc`` as a failed call that already passed admission.

        For failures the guard cannot see, such as a stream that breaks after
        its call returned. Classified like any outcome (``ignore``/``record``,
        cancellation is not counted); only a CLOSED breaker's window takes it.
        """
        if self._state is CLOSED:
            shared = self._store is not None and self._degraded_until is None
            self._finish(self._gen, False, shared, 0.0, exc)

    def _classify(self, exc: BaseException | None) -> int | None:
        if exc is None:
            return 0
        if not isinstance(exc, Exception):
            return None  # cancellation, KeyboardInterrupt, GeneratorExit, SystemExit
        if self._ignore(exc):
            return None
        return FAILURE if self._record(exc) else 0

    def _finish(
        self, gen: int, trial: bool, shared: bool, start: float, exc: BaseException | None
    ) -> None:
        if gen < 0:
            return
        code = self._classify(exc)
        if code is None:
            (self._m_cancelled if not isinstance(exc, Exception) else self._m_ignored).inc()
        else:
            if self._timed:
                now = self._clock()
                if self.slow_call_duration is not None and now - start >= self.slow_call_duration:
                    code |= SLOW
            if code:
                self._m_outcome[code].inc()
            else:
                with self._lock:
                    self._ok += 1  # published in batches (see flush_metrics)
        if shared:
            self._finish_shared(gen, trial, code)
            return
        change = None
        with self._lock:
            if gen != self._gen:
                return
            if trial:
                if code is None:
                    self._permits += 1
                    return
                trials = self._trials
                trials[0] += 1
                trials[1] += code & FAILURE
                trials[2] += code >> 1
                if trials[0] >= self.half_open_calls:
                    now = self._clock()
                    change = self._to(OPEN if self._tripped(*trials) else CLOSED, now)
            elif code is not None and self._state is CLOSED:
                now = self._clock() if self._timed else 0.0
                window = self._window
                window.add(code, now)
                if code:  # only a failure or a slow call can trip the breaker
                    calls, failures, slow = window.totals(now)
                    if calls >= self.minimum_calls and self._tripped(calls, failures, slow):
                        change = self._to(OPEN, self._clock())
        if change is not None:
            self._emit(change)

    def _tripped(self, calls: int, failures: int, slow: int) -> bool:
        if calls <= 0:
            return False
        if failures >= calls * self.failure_rate_threshold:
            return True
        return self.slow_call_duration is not None and slow >= calls * self.slow_call_rate_threshold

    # -- transitions ---------------------------------------------------------

    def _to(self, state: BreakerState, now: float) -> tuple[str, str] | None:
        """Move to ``state`` (call with the lock held); returns the change to emit."""
        old = self._state
        self._gen += 1
        self._state = state
        if state is OPEN:
            self._open_until = now + self.open_duration
        elif state is HALF_OPEN:
            self._permits = self.half_open_calls
            self._trials = [0, 0, 0]
        elif state is CLOSED:
            self._window.reset()
        return None if old is state else (old.value, state.value)

    def _emit(self, change: tuple[str, str] | None) -> None:
        if change is None:
            return
        old, new = change
        self.signals.transitions.labels(breaker=self.name, from_state=old, to_state=new).inc()
        self.signals.set_state(self.name, new)
        log.info("ragprod.resilience.breaker_transition", breaker=self.name, from_state=old,
                 to_state=new)  # fmt: skip
        span_event(
            "ragprod.resilience.breaker_transition",
            {"breaker": self.name, "from_state": old, "to_state": new},
        )

    # -- calling -------------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn(*args, **kwargs)`` through the breaker.

        Raises:
            CircuitOpenError: the breaker rejected the call (``fn`` not called).
        """
        if self._state is CLOSED and self._store is None and not self._timed:
            gen = self._gen  # the hot path, inlined: no guard object
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._finish(gen, False, False, 0.0, exc)
                raise
            self._success(gen)
            return result
        if self._state is OPEN:  # reject from this frame: shorter traceback, no guard
            now = self._clock()
            if now < self._open_until:
                raise self._reject(self._open_until - now)
        with _Guard(self):
            return fn(*args, **kwargs)

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker."""
        if self._state is CLOSED and self._store is None and not self._timed:
            gen = self._gen
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                self._finish(gen, False, False, 0.0, exc)
                raise
            self._success(gen)
            return result
        with _Guard(self):
            return await fn(*args, **kwargs)

    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]:
        """Use the breaker as a decorator on a sync or async function."""
        async_wrapper = wrap_async(self.acall, fn)
        if async_wrapper is not None:
            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
            if self._state is CLOSED and self._store is None and not self._timed:
                gen = self._gen
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    self._finish(gen, False, False, 0.0, exc)
                    raise
                self._success(gen)
                return result
            if self._state is OPEN:
                now = self._clock()
                if now < self._open_until:
                    raise self._reject(self._open_until - now)
            with _Guard(self):
                return fn(*args, **kwargs)

        return wrapper

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.name!r}, state={self._state.value})"
