"""The service's own observability: its tracer provider, HTTP metrics and cache-hit readout.

The service owns a private OpenTelemetry ``TracerProvider`` (it never sets the
global one). Each ``POST /query`` runs in a server span; the hardened engine's
query span is its child, so the response's ``trace_id`` finds the whole trace.
Export is whatever ``OTEL_*`` configuration you add; the example exports
nowhere by default.

The cache layer marks the current span with ``cache.hit``. :class:`CacheHitLog`
is a span processor that remembers that mark by the id of the marked span's
parent (the request's server span) until the request handler collects it:
that is how responses say ``cached: true`` without the service peeking into
ragprod's internals. Keying by the server span, not the trace, keeps two
requests that continue the same incoming trace apart.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider

from ragprod.metrics import RagMetrics

__all__ = ["ROUTES", "CacheHitLog", "HttpMetrics", "make_tracer_provider"]

#: Route label values of the HTTP metrics (anything else is ``other``).
ROUTES = frozenset({"/query", "/health", "/ready", "/metrics", "/admin/faults"})


class CacheHitLog(SpanProcessor):
    """Remembers ``cache.hit`` of finished spans by parent span id (bounded, thread-safe)."""

    def __init__(self, maxsize: int = 4096) -> None:
        self._hits: OrderedDict[int, bool] = OrderedDict()
        self._lock = threading.Lock()
        self._maxsize = maxsize

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Record the span's ``cache.hit`` attribute, if it has one."""
        attributes = span.attributes or {}
        hit = attributes.get("cache.hit")
        if hit is None or span.context is None:
            return
        key = span.parent.span_id if span.parent is not None else span.context.span_id
        with self._lock:
            self._hits[key] = bool(hit)
            while len(self._hits) > self._maxsize:
                self._hits.popitem(last=False)

    def pop(self, span: Any) -> bool | None:
        """Whether the query under the request span ``span`` was a cache hit (``None``: unknown).

        Without the tracing layer the cache marks ``span`` itself.
        """
        with self._lock:
            hit = self._hits.pop(span.get_span_context().span_id, None)
        if hit is None and span is not None:
            value = (getattr(span, "attributes", None) or {}).get("cache.hit")
            hit = None if value is None else bool(value)
        return hit

    def shutdown(self) -> None:
        """Forget everything."""
        with self._lock:
            self._hits.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered."""
        return True


def make_tracer_provider(service_name: str, hits: CacheHitLog) -> TracerProvider:
    """A private SDK provider for the service, with ``hits`` attached."""
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(hits)
    return provider


class HttpMetrics:
    """Pure ASGI middleware: ``ragprod_service_requests_total`` and request duration.

    Duration runs until the response body is complete (streams included).
    Labels are the route template and the status code only.
    """

    def __init__(self, app: Any, metrics: RagMetrics) -> None:
        self.app = app
        self.requests = metrics.counter(
            "ragprod_service_requests_total",
            "HTTP requests served by the example service.",
            ("route", "status"),
        )
        self.duration = metrics.histogram(
            "ragprod_service_request_duration_seconds",
            "HTTP request duration, until the last byte.",
            ("route",),
        )

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        route = path if path in ROUTES else "other"
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.requests.labels(route=route, status=str(status[0])).inc()
            self.duration.labels(route=route).observe(time.perf_counter() - start)
