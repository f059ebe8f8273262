"""Capture spans, metrics and log events in tests, without global state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Sampler
from structlog.testing import capture_logs as _structlog_capture_logs

from ragprod.logging._processors import add_trace_context
from ragprod.metrics import RagMetrics

__all__ = ["SpanCapture", "capture_logs", "capture_metrics", "capture_spans"]


class SpanCapture:
    """A private SDK ``TracerProvider`` whose finished spans land in memory.

    Pass :attr:`provider` as ``tracer_provider=`` to ragprod (it is never made
    the global provider); read finished spans with :attr:`spans`.

    Attributes:
        provider: the ``opentelemetry.sdk.trace.TracerProvider``.
        exporter: its ``InMemorySpanExporter``.
    """

    def __init__(self, sampler: Sampler | None = None) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    @property
    def spans(self) -> tuple[ReadableSpan, ...]:
        """Finished spans, in the order they ended."""
        return tuple(self.exporter.get_finished_spans())

    def names(self) -> list[str]:
        """The names of the finished spans, in the order they ended."""
        return [span.name for span in self.spans]

    def named(self, name: str) -> list[ReadableSpan]:
        """The finished spans called ``name``."""
        return [span for span in self.spans if span.name == name]

    def clear(self) -> None:
        """Forget the spans captured so far."""
        self.exporter.clear()

    def shutdown(self) -> None:
        """Shut the provider down (no more spans are recorded)."""
        self.provider.shutdown()


@contextmanager
def capture_spans(sampler: Sampler | None = None) -> Iterator[SpanCapture]:
    """Capture the spans of a block on a private tracer provider.

    Args:
        sampler: the provider's sampler (for example ``ALWAYS_OFF`` to test
            unsampled behaviour); the SDK default otherwise.

    Example:
        >>> from ragprod.testing import FaultyQueryEngine, capture_logs, capture_spans
        >>> from ragprod.tracing import TracedQueryEngine
        >>> with capture_spans() as captured, capture_logs():
        ...     engine = TracedQueryEngine(
        ...         FaultyQueryEngine(), tracer_provider=captured.provider, name="docs"
        ...     )
        ...     _ = engine.query("hello")
        >>> captured.names()
        ['query docs']
    """
    capture = SpanCapture(sampler)
    try:
        yield capture
    finally:
        capture.shutdown()


def capture_metrics() -> RagMetrics:
    """A :class:`~ragprod.metrics.RagMetrics` on a fresh private registry.

    Example:
        >>> metrics = capture_metrics()
        >>> metrics.value("ragprod_query_requests_total", engine="x", outcome="success") is None
        True
    """
    return RagMetrics()


@contextmanager
def capture_logs() -> Iterator[list[dict[str, Any]]]:
    """Capture structlog events of a block as dicts, with ``trace_id``/``span_id``.

    Like ``structlog.testing.capture_logs`` (and, like it, not thread-safe),
    plus :func:`ragprod.logging.add_trace_context`, so each event carries the
    ids of the span that was current when it was logged.

    Example:
        >>> import structlog
        >>> with capture_logs() as events:
        ...     structlog.get_logger().info("ragprod.demo.hello")
        >>> events[0]["event"]
        'ragprod.demo.hello'
    """
    with _structlog_capture_logs(processors=[add_trace_context]) as events:
        yield events  # type: ignore[misc]
