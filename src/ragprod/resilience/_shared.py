"""The shared-state half of ``CircuitBreaker``: talking to a ``RedisBreakerStore``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ragprod.resilience._signals import Signals, log, log_throttled
from ragprod.resilience._state import (
    CLOSED,
    DISABLED,
    FORCED_OPEN,
    HALF_OPEN,
    OPEN,
    SYNCED,
    BreakerState,
)
from ragprod.resilience._window import FAILURE, CountWindow, TimeWindow

if TYPE_CHECKING:
    from ragprod.errors import CircuitOpenError
    from ragprod.resilience._store import RedisBreakerStore, Shared

__all__ = ["SharedStateMixin"]


class SharedStateMixin:
    """Admission and recording through a store; mixed into ``CircuitBreaker``.

    Protocol (each store call is one atomic Lua script run):

    - CLOSED: admit locally while the last sync is younger than
      ``store.sync_interval``; buffer outcomes and flush them with the next
      failure or sync. A new process syncs before its first call.
    - OPEN: reject locally until the shared open period ends.
    - HALF_OPEN: ask the store for a permit; report each trial's outcome.
    - Any store error: count it, log it (throttled) and run on the local
      state machine for ``store.retry_interval`` seconds.
    """

    # provided by CircuitBreaker
    name: str
    failure_rate_threshold: float
    slow_call_rate_threshold: float
    slow_call_duration: float | None
    minimum_calls: int
    window_size: int
    window_duration: float | None
    open_duration: float
    half_open_calls: int
    signals: Signals
    _lock: threading.Lock
    _state: BreakerState
    _gen: int
    _open_until: float
    _window: CountWindow | TimeWindow
    _clock: Callable[[], float]
    _store: RedisBreakerStore | None
    _pending: list[str]
    _next_sync: float
    _fresh: bool
    _deny_until: float
    _degraded_until: float | None
    _ok: int

    def _emit(self, change: tuple[str, str] | None) -> None:
        raise NotImplementedError

    def _flush_ok(self) -> None:
        raise NotImplementedError

    def _reject(self, retry_after: float | None) -> CircuitOpenError:
        raise NotImplementedError

    def _shared_success(self, gen: int) -> None:
        """Buffer a fast success admitted in shared CLOSED state (flushed with the next sync)."""
        with self._lock:
            if gen == self._gen:
                pending = self._pending
                pending.append("0")
                if self.window_duration is None and len(pending) > 2 * self.window_size:
                    del pending[: -self.window_size]  # older ones would slide out anyway
                self._ok += 1
                if self._ok >= 64:
                    self._flush_ok()

    def _in_sync(self) -> bool:
        """True if the shared view is fresh enough to admit without a round trip."""
        return not self._fresh and self._degraded_until is None and self._clock() < self._next_sync

    def _store_usable(self, now: float) -> bool:
        until = self._degraded_until
        return until is None or now >= until

    def _store_failed(self, exc: BaseException) -> None:
        store = self._store
        assert store is not None
        first = self._degraded_until is None
        self._degraded_until = self._clock() + store.retry_interval
        self.signals.store_errors.labels(upstream=self.name).inc()
        if first:
            self.signals.store_degraded.labels(upstream=self.name).set(1)
            self._pending.clear()
        log_throttled(
            "ragprod.resilience.store_unavailable",
            self.name,
            breaker=self.name,
            error=type(exc).__name__,
            fallback="local_state",
        )

    def _adopt(self, shared: Shared, now: float) -> None:
        """Take the shared state as ours (after a successful store round trip)."""
        if self._degraded_until is not None:
            self._degraded_until = None
            self.signals.store_degraded.labels(upstream=self.name).set(0)
            log.info("ragprod.resilience.store_recovered", breaker=self.name)
        state = BreakerState(shared.state)
        with self._lock:
            old = self._state
            self._state = state
            self._gen = shared.gen
            self._open_until = now + shared.open_remaining
            if state is CLOSED and old is not CLOSED:
                self._window.reset()
        if old is not state:
            if shared.changed:
                self._emit((old.value, state.value))
            else:
                self.signals.set_state(self.name, state.value)

    def _acquire_shared(self, now: float) -> tuple[int, bool, bool]:
        store = self._store
        assert store is not None
        state = self._state
        if state in SYNCED and (self._fresh or now >= self._next_sync):
            self._sync(now)  # a new process learns the shared state before its first call
            self._fresh = False
            state = self._state
        if state is CLOSED:
            return self._gen, False, True
        if state is DISABLED:
            return -1, False, False
        if state is FORCED_OPEN:
            raise self._reject(None)
        if state is OPEN and now < self._open_until:
            raise self._reject(self._open_until - now)
        if state is HALF_OPEN and now < self._deny_until:
            raise self._reject(None)
        granted, shared = store.acquire(self)
        self._adopt(shared, now)
        if shared.state == "closed":  # closed meanwhile (by another process)
            return shared.gen, False, True
        if shared.state == "disabled":
            return -1, False, False
        if granted:
            return shared.gen, True, True
        if shared.state == "half_open":
            self._deny_until = now + store.sync_interval
        raise self._reject(shared.open_remaining if shared.state == "open" else None)

    def _sync(self, now: float) -> None:
        store = self._store
        assert store is not None
        with self._lock:
            outcomes = "".join(self._pending)
            self._pending.clear()
            gen = self._gen
        self._next_sync = now + store.sync_interval
        shared = store.sync(self, gen, outcomes)
        self._adopt(shared, now)

    def _finish_shared(self, gen: int, trial: bool, code: int | None) -> None:
        store = self._store
        assert store is not None
        try:
            if trial:
                self._adopt(store.finish_trial(self, gen, code), self._clock())
            elif code is not None:
                with self._lock:
                    if gen != self._gen:
                        return
                    pending = self._pending
                    pending.append("0123"[code])
                    if self.window_duration is None and len(pending) > 2 * self.window_size:
                        del pending[: -self.window_size]  # older ones would slide out anyway
                    flush = code & FAILURE
                if flush:
                    self._sync(self._clock())
        except Exception as exc:  # redis errors: the local state carries on
            self._store_failed(exc)
