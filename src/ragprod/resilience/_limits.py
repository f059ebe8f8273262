"""``Timeout`` and ``Bulkhead``: bound how long and how many calls run."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import functools
import queue
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast

from ragprod.errors import BulkheadFullError, ConfigurationError, UpstreamTimeoutError
from ragprod.metrics import RagMetrics
from ragprod.resilience._signals import Signals, log_throttled, span_event
from ragprod.resilience._watchdog import Watchdog, watchdog_for

__all__ = ["Bulkhead", "Timeout"]

P = ParamSpec("P")
T = TypeVar("T")


class Timeout:
    """Give up on a call after ``seconds`` with :class:`~ragprod.errors.UpstreamTimeoutError`.

    Async calls are really cancelled: the awaited coroutine receives
    ``CancelledError`` at the deadline (``asyncio.timeout``), so its sockets and
    tasks are cleaned up.

    Python cannot interrupt a running thread, so sync calls are enforced in
    one of two honest ways, chosen by ``sync``:

    - ``"thread"`` (default): the call runs in a worker thread (with the
      caller's ``contextvars``) and the caller stops waiting at the deadline.
      The abandoned call keeps running in the background until it returns on
      its own; its result is discarded. Give the upstream client its own
      timeout too, so abandoned calls end. Costs a thread hand-off (~20-50 us).
    - ``"check"``: the call runs inline and, if it overran, its result is
      discarded and ``UpstreamTimeoutError`` raised when it returns. Free,
      but the caller waits for the slow call.

    Args:
        seconds: the deadline per call.
        name: the protected resource, for errors, metrics and logs.
        sync: how sync calls are enforced (see above).
        max_workers: worker threads for ``sync="thread"``.
        clock: monotonic time (``sync="check"`` only).
        metrics: where to count timeouts.

    Example:
        >>> import asyncio
        >>> from ragprod.errors import UpstreamTimeoutError
        >>> async def slow() -> None:
        ...     await asyncio.sleep(10)
        >>> try:
        ...     asyncio.run(Timeout(0.01, name="llm").acall(slow))
        ... except UpstreamTimeoutError as exc:
        ...     print(exc)
        upstream timed out after 0.010s: llm
    """

    def __init__(
        self,
        seconds: float,
        *,
        name: str = "default",
        sync: Literal["thread", "check"] = "thread",
        max_workers: int = 64,
        clock: Callable[[], float] = time.monotonic,
        metrics: RagMetrics | None = None,
    ) -> None:
        if not seconds > 0:
            raise ConfigurationError("Timeout seconds must be positive")
        if sync not in ("thread", "check"):
            raise ConfigurationError("Timeout sync must be 'thread' or 'check'")
        self.seconds = float(seconds)
        self.name = name
        self.sync = sync
        self._max_workers = max_workers
        self._clock = clock
        self._executor: _DaemonPool | None = None
        self._executor_lock = threading.Lock()
        self._last: tuple[object, Watchdog | None] = (None, None)
        self.bind_metrics(metrics or RagMetrics())

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count timeouts on ``metrics`` from now on."""
        self.signals = Signals(metrics)
        self._m_timeouts = self.signals.timeouts.labels(upstream=self.name)

    def _expired(self, seconds: float) -> UpstreamTimeoutError:
        self._m_timeouts.inc()
        fields = {"name": self.name, "timeout": seconds}
        log_throttled("ragprod.resilience.timeout", self.name, 1.0, "info", **fields)
        span_event("ragprod.resilience.timeout", fields)
        return UpstreamTimeoutError(self.name, timeout=seconds)

    def _pool(self) -> _DaemonPool:
        if self._executor is None:
            with self._executor_lock:
                if self._executor is None:
                    self._executor = _DaemonPool(self._max_workers, f"ragprod-timeout-{self.name}")
        return self._executor

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Call ``fn`` under the deadline (see the class docs for sync semantics)."""
        return self.call_within(self.seconds, fn, *args, **kwargs)

    def call_within(
        self, seconds: float, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like :meth:`call` with another deadline (e.g. what is left of a retry deadline)."""
        if self.sync == "check":
            start = self._clock()
            result = fn(*args, **kwargs)
            if self._clock() - start > seconds:
                raise self._expired(seconds)
            return result
        context = contextvars.copy_context()
        job: _Job[T] = _Job(functools.partial(context.run, fn, *args, **kwargs))
        self._pool().submit(job)
        # The worker releases ``finished`` when done: one lock, no Future/Condition.
        if not job.finished.acquire(timeout=seconds):
            job.abandoned = True  # a worker that has not started it will skip it
            if not job.finished.acquire(blocking=False):  # not finished at the last moment
                raise self._expired(seconds)
        return job.outcome()

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Await ``fn`` and cancel it at the deadline."""
        if sys.version_info < (3, 11):  # pragma: no cover - no Task.uncancel()
            return await self.acall_within(self.seconds, fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:  # pragma: no cover - awaited outside a task
            return await self.acall_within(self.seconds, fn, *args, **kwargs)
        last = self._last
        if last[0] is loop:
            dog = last[1]
        else:
            dog = watchdog_for(loop, self.seconds)
            self._last = (loop, dog)
        entry = dog.add(task, self.seconds)
        try:
            return await fn(*args, **kwargs)
        except asyncio.CancelledError as exc:
            if entry.expired:
                entry.expired = False
                if task.uncancel() <= entry.cancelling:
                    raise self._expired(self.seconds) from exc
            raise
        finally:
            entry.done = True
            if entry.expired:  # expired, but the call swallowed the cancellation
                task.uncancel()

    async def acall_within(
        self, seconds: float, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Like :meth:`acall` with another deadline."""
        if sys.version_info >= (3, 11):
            try:
                async with asyncio.timeout(seconds) as scope:
                    return await fn(*args, **kwargs)
            except TimeoutError as exc:
                if scope.expired():
                    raise self._expired(seconds) from exc
                raise  # the call's own TimeoutError, not ours
        else:  # pragma: no cover - Python 3.10: wait_for runs the call as a task
            try:
                return await asyncio.wait_for(fn(*args, **kwargs), seconds)
            except asyncio.TimeoutError as exc:
                raise self._expired(seconds) from exc

    def __repr__(self) -> str:
        return f"Timeout({self.seconds}, sync={self.sync!r})"


class _Job(Generic[T]):
    """One call handed to a worker: the function, its outcome, and a lock held until done."""

    __slots__ = ("abandoned", "error", "finished", "fn", "result")

    def __init__(self, fn: Callable[[], T]) -> None:
        self.fn: Callable[[], T] | None = fn
        self.result: T | None = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.finished = threading.Lock()
        self.finished.acquire()

    def run(self) -> None:
        fn, self.fn = self.fn, None
        try:
            if fn is not None and not self.abandoned:
                self.result = fn()
        except BaseException as exc:  # handed to the caller, if still waiting
            self.error = exc
        finally:
            self.finished.release()

    def outcome(self) -> T:
        error = self.error
        if error is not None:
            self.error = None  # no reference cycle through the traceback
            try:
                raise error
            finally:
                error = None
        return cast(T, self.result)


class _DaemonPool:
    """A minimal thread pool of daemon threads.

    ``concurrent.futures.ThreadPoolExecutor`` joins its threads at interpreter
    exit, so one upstream call that never returns would keep the process from
    exiting. Abandoned timed-out calls must not do that.
    """

    def __init__(self, max_workers: int, prefix: str) -> None:
        self._max = max_workers
        self._prefix = prefix
        self._queue: queue.SimpleQueue[_Job[Any]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, job: _Job[Any]) -> None:
        with self._lock:
            if self._idle == 0 and self._threads < self._max:
                self._threads += 1
                name = f"{self._prefix}-{self._threads}"
                threading.Thread(target=self._work, name=name, daemon=True).start()
            else:
                self._idle -= 1 if self._idle else 0
        self._queue.put(job)

    def _work(self) -> None:
        while True:
            self._queue.get().run()
            with self._lock:
                self._idle += 1


class _Waiter:
    __slots__ = ("event", "future", "loop")

    def __init__(self) -> None:
        self.event: threading.Event | None = None
        self.future: asyncio.Future[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Bulkhead:
    """Allow at most ``max_concurrent`` calls in flight; refuse the rest.

    A call that finds no free slot waits up to ``max_wait`` seconds (first
    come, first served; sync threads and async tasks share the same slots)
    and then raises :class:`~ragprod.errors.BulkheadFullError`. A waiter that
    is cancelled leaves the queue without taking a slot.

    Args:
        max_concurrent: slots.
        max_wait: seconds a call may wait for a slot (0: fail at once).
        name: the protected resource, for errors, metrics and logs.
        metrics: where to count rejections.

    Example:
        >>> bulkhead = Bulkhead(2)
        >>> with bulkhead.slot():
        ...     bulkhead.in_flight
        1
    """

    def __init__(
        self,
        max_concurrent: int = 64,
        max_wait: float = 0.0,
        *,
        name: str = "default",
        metrics: RagMetrics | None = None,
    ) -> None:
        if max_concurrent < 1:
            raise ConfigurationError("Bulkhead max_concurrent must be at least 1")
        if max_wait < 0:
            raise ConfigurationError("Bulkhead max_wait must not be negative")
        self.max_concurrent = max_concurrent
        self.max_wait = max_wait
        self.name = name
        self._lock = threading.Lock()
        self._used = 0
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self.bind_metrics(metrics or RagMetrics())

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count rejections on ``metrics`` from now on."""
        self.signals = Signals(metrics)
        self._m_rejected = self.signals.bulkhead_rejected.labels(upstream=self.name)

    @property
    def in_flight(self) -> int:
        """Slots currently taken."""
        return self._used

    def _full(self) -> BulkheadFullError:
        self._m_rejected.inc()
        fields = {"name": self.name, "max_concurrent": self.max_concurrent}
        log_throttled("ragprod.resilience.bulkhead_full", self.name, 1.0, "info", **fields)
        span_event("ragprod.resilience.bulkhead_full", fields)
        return BulkheadFullError(self.name)

    def _try(self, waiter: _Waiter | None) -> bool:
        """Take a slot now, or queue ``waiter`` (with the lock held by the caller)."""
        if self._used < self.max_concurrent and not self._waiters:
            self._used += 1
            return True
        if waiter is not None:
            self._waiters.append(waiter)
        return False

    def try_acquire(self) -> bool:
        """Take a free slot if there is one, without waiting; returns whether it did."""
        with self._lock:
            if self._used < self.max_concurrent and not self._waiters:
                self._used += 1
                return True
        return False

    def acquire(self) -> None:
        """Take a slot, waiting up to ``max_wait``; raises ``BulkheadFullError``."""
        waiter = None
        with self._lock:
            if self._try(None):
                return
            if self.max_wait <= 0:
                raise self._full()
            waiter = _Waiter()
            waiter.event = threading.Event()
            self._waiters.append(waiter)
        if waiter.event is not None and waiter.event.wait(self.max_wait):
            return  # a releaser handed its slot to us
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                raise self._full()
        # handed over between the timeout and the lock: we own a slot

    async def aacquire(self) -> None:
        """Take a slot from async code, waiting up to ``max_wait``."""
        with self._lock:
            if self._try(None):
                return
            if self.max_wait <= 0:
                raise self._full()
            waiter = _Waiter()
            waiter.loop = asyncio.get_running_loop()
            waiter.future = waiter.loop.create_future()
            self._waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.max_wait)
            return  # a releaser handed its slot to us
        except TimeoutError:
            pass
        except BaseException:  # cancelled while waiting
            with self._lock:
                queued = waiter in self._waiters
                if queued:
                    self._waiters.remove(waiter)
            if not queued:  # a slot was handed to us meanwhile: give it back
                self.release()
            raise
        with self._lock:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                raise self._full()
        # handed over between the timeout and the lock: we own a slot

    def release(self) -> None:
        """Give a slot back (to the first waiter, if any)."""
        with self._lock:
            while self._waiters:
                waiter = self._waiters.popleft()
                if waiter.event is not None:
                    waiter.event.set()
                    return
                if waiter.loop is not None and waiter.future is not None:
                    try:
                        waiter.loop.call_soon_threadsafe(_wake, waiter.future)
                    except RuntimeError:  # its event loop is closed: try the next waiter
                        continue
                    return
            self._used -= 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the ``with`` block."""
        self.acquire()
        try:
            yield
        finally:
            self.release()

    @contextlib.asynccontextmanager
    async def aslot(self) -> AsyncIterator[None]:
        """Hold a slot for the ``async with`` block."""
        await self.aacquire()
        try:
            yield
        finally:
            self.release()

    def __repr__(self) -> str:
        return f"Bulkhead({self.max_concurrent}, max_wait={self.max_wait})"
