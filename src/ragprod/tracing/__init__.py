"""OpenTelemetry tracing for LlamaIndex, with Prometheus metrics and structured logs.

- :class:`TracedQueryEngine`: one span, ``ragprod_query_*`` metrics and one
  log event per query, around any query engine (streaming and async too).
- :class:`TracedRetriever`: a span and a latency histogram around a retriever.
- :func:`instrument` / :func:`uninstrument`: turn LlamaIndex's own
  instrumentation (retrieval, synthesis, LLM, embedding, postprocessor spans)
  into OTel child spans of the query span.
- :class:`Tracing`: the options, for ``ragprod.harden(tracing=Tracing(...))``.

ragprod never sets the global tracer provider: pass ``tracer_provider=`` or
configure the global one in your application. Content (queries, answers,
node texts) stays out of spans unless you ask for it.

Example:
    >>> from opentelemetry.sdk.trace import TracerProvider
    >>> from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    >>> from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    ...     InMemorySpanExporter,
    ... )
    >>> from ragprod.testing import FaultyQueryEngine, capture_logs
    >>> from ragprod.tracing import TracedQueryEngine
    >>> exporter = InMemorySpanExporter()
    >>> provider = TracerProvider()
    >>> provider.add_span_processor(SimpleSpanProcessor(exporter))
    >>> engine = TracedQueryEngine(FaultyQueryEngine(), tracer_provider=provider, name="docs")
    >>> with capture_logs() as events:
    ...     _ = engine.query("hello")
    >>> [span.name for span in exporter.get_finished_spans()]
    ['query docs']
"""

from ragprod.tracing._config import Tracing
from ragprod.tracing._context import QueryRecord, current_query
from ragprod.tracing._instrument import instrument, uninstrument
from ragprod.tracing._query import TracedQueryEngine
from ragprod.tracing._retriever import TracedRetriever

__all__ = [
    "QueryRecord",
    "TracedQueryEngine",
    "TracedRetriever",
    "Tracing",
    "current_query",
    "instrument",
    "uninstrument",
]
