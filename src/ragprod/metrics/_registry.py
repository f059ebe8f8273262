"""Prometheus collectors shared by every ragprod layer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from ragprod.errors import ConfigurationError

__all__ = ["DEFAULT_LATENCY_BUCKETS", "RagMetrics"]

_M = TypeVar("_M", bound=MetricWrapperBase)

DEFAULT_LATENCY_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class RagMetrics:
    """The Prometheus collectors of one ragprod deployment, on one registry.

    Every layer asks its ``RagMetrics`` for collectors by name; the first request
    creates the collector on the registry, later ones return the same object, so
    layers composed by ``harden()`` share one set of metrics. Names follow
    ``ragprod_<area>_<thing>_<unit|total>``; label values must never carry user
    content (layers pass engine names, outcomes and reason codes only).

    Args:
        registry: where collectors are registered. Defaults to a new private
            ``CollectorRegistry``, never the global one: pass
            ``prometheus_client.REGISTRY`` to expose them on the default
            ``/metrics``. In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``
            set), collect with ``prometheus_client.multiprocess.MultiProcessCollector``;
            gauges here use ``multiprocess_mode="livesum"``.

    Example:
        >>> m = RagMetrics()
        >>> c = m.counter("ragprod_demo_events_total", "Demo events.", ("kind",))
        >>> c.labels(kind="x").inc()
        >>> m.value("ragprod_demo_events_total", kind="x")
        1.0
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._collectors: dict[str, MetricWrapperBase] = {}
        self._lock = threading.Lock()

    def _get(
        self, kind: type[_M], name: str, documentation: str, labels: Sequence[str], **kw: object
    ) -> _M:
        existing = self._collectors.get(name)
        if existing is None:
            with self._lock:
                existing = self._collectors.get(name)
                if existing is None:
                    make: Any = kind
                    existing = make(
                        name, documentation, tuple(labels), registry=self.registry, **kw
                    )
                    self._collectors[name] = existing
        if not isinstance(existing, kind) or tuple(existing._labelnames) != tuple(labels):
            raise ConfigurationError(
                f"metric {name} already registered with another type or label set"
            )
        return existing

    def counter(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
        """Get or create the counter ``name`` (its name should end in ``_total``)."""
        if name.endswith("_total"):
            name = name[: -len("_total")]
        return self._get(Counter, name, documentation, labels)

    def histogram(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str] = (),
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> Histogram:
        """Get or create the histogram ``name``."""
        return self._get(Histogram, name, documentation, labels, buckets=tuple(buckets))

    def gauge(self, name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
        """Get or create the gauge ``name`` (``livesum`` across processes)."""
        return self._get(Gauge, name, documentation, labels, multiprocess_mode="livesum")

    def value(self, name: str, **labels: str) -> float | None:
        """The current value of a sample, for tests and health pages.

        ``name`` is the sample name as exposed (``..._total``, ``..._count``,
        ``..._sum``); returns ``None`` if no such sample exists.
        """
        return self.registry.get_sample_value(name, labels)
