"""The three signals every resilience decision emits: a metric, a log event, a span event."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from opentelemetry import trace
from prometheus_client import Counter, Gauge

from ragprod.metrics import RagMetrics

__all__ = ["Signals", "log"]

log = structlog.get_logger("ragprod.resilience")

STATES = ("closed", "open", "half_open", "disabled", "forced_open")


def span_event(name: str, attributes: dict[str, Any]) -> None:
    """Add an event to the current span, if one is recording (never raises)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.add_event(name, {k: v for k, v in attributes.items() if v is not None})


class Signals:
    """The resilience collectors on one :class:`RagMetrics`.

    Metric names (labels carry component names, states and outcome codes only):

    - ``ragprod_resilience_breaker_state{breaker,state}``: 1 for the current state.
    - ``ragprod_resilience_breaker_calls_total{breaker,outcome}``: ``success``,
      ``failure``, ``slow_success``, ``slow_failure``, ``ignored``, ``cancelled``,
      ``rejected``.
    - ``ragprod_resilience_breaker_transitions_total{breaker,from_state,to_state}``.
    - ``ragprod_resilience_retries_total{upstream}``,
      ``ragprod_resilience_timeouts_total{upstream}``,
      ``ragprod_resilience_rate_limited_total{upstream}``,
      ``ragprod_resilience_bulkhead_rejected_total{upstream}``,
      ``ragprod_resilience_fallbacks_total{upstream}``.
    - ``ragprod_resilience_store_errors_total{upstream}`` and
      ``ragprod_resilience_store_degraded{upstream}`` (1 while running on local state
      because Redis is unreachable).
    """

    def __init__(self, metrics: RagMetrics) -> None:
        self.metrics = metrics
        hook = getattr(metrics, "_ragprod_resilience_flush", None)
        if hook is None:
            # Registered before the counters, so a collection flushes buffered
            # counts first (the registry collects in registration order).
            hook = _FlushOnCollect()
            metrics.registry.register(hook)
            metrics._ragprod_resilience_flush = hook  # type: ignore[attr-defined]
        self._hook: _FlushOnCollect = hook
        self.state = metrics.gauge(
            "ragprod_resilience_breaker_state",
            "1 for the current state of each circuit breaker.",
            ("breaker", "state"),
        )
        self.calls = metrics.counter(
            "ragprod_resilience_breaker_calls_total",
            "Calls through a circuit breaker, by outcome.",
            ("breaker", "outcome"),
        )
        self.transitions = metrics.counter(
            "ragprod_resilience_breaker_transitions_total",
            "Circuit breaker state transitions.",
            ("breaker", "from_state", "to_state"),
        )
        self.retries = metrics.counter(
            "ragprod_resilience_retries_total", "Retries scheduled after a failure.", ("upstream",)
        )
        self.timeouts = metrics.counter(
            "ragprod_resilience_timeouts_total", "Calls that ran past their timeout.", ("upstream",)
        )
        self.rate_limited = metrics.counter(
            "ragprod_resilience_rate_limited_total",
            "Calls refused by a rate limiter.",
            ("upstream",),
        )
        self.bulkhead_rejected = metrics.counter(
            "ragprod_resilience_bulkhead_rejected_total",
            "Calls refused by a full bulkhead.",
            ("upstream",),
        )
        self.fallbacks = metrics.counter(
            "ragprod_resilience_fallbacks_total", "Failures answered by a fallback.", ("upstream",)
        )
        self.store_errors = metrics.counter(
            "ragprod_resilience_store_errors_total",
            "Failed round trips to a shared (Redis) state store.",
            ("upstream",),
        )
        self.store_degraded = metrics.gauge(
            "ragprod_resilience_store_degraded",
            "1 while a component runs on local state because its store is unreachable.",
            ("upstream",),
        )

    def on_collect(self, flush: Callable[[], None]) -> None:
        """Call ``flush`` before each collection of the registry (held weakly)."""
        self._hook.add(flush)

    def counter(self, counter: Counter, **labels: str) -> Any:
        """A bound child of ``counter`` (bind once, ``inc()`` on the hot path)."""
        return counter.labels(**labels)

    def set_state(self, breaker: str, state: str) -> None:
        """Set the state gauge of ``breaker`` to one-hot ``state``."""
        gauge: Gauge = self.state
        for s in STATES:
            gauge.labels(breaker=breaker, state=s).set(1.0 if s == state else 0.0)


class _FlushOnCollect:
    """A collector that yields nothing and flushes buffered counts when collected."""

    def __init__(self) -> None:
        self._flushes: list[weakref.WeakMethod[Callable[[], None]]] = []

    def add(self, flush: Callable[[], None]) -> None:
        self._flushes = [f for f in self._flushes if f() is not None]
        self._flushes.append(weakref.WeakMethod(flush))

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        for ref in list(self._flushes):
            flush = ref()
            if flush is not None:
                flush()
        return iter(())


_last_logged: dict[tuple[str, str], float] = {}


def log_throttled(
    event: str, key: str, interval: float = 10.0, level: str = "warning", **fields: Any
) -> None:
    """Log ``event`` at most once per ``interval`` seconds per ``key``."""
    now = time.monotonic()
    last = _last_logged.get((event, key))
    if last is None or now - last >= interval:
        _last_logged[(event, key)] = now
        getattr(log, level)(event, **fields)
