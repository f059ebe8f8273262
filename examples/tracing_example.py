"""Trace a LlamaIndex query engine: spans, Prometheus metrics and JSON logs, offline.

Run: ``python examples/tracing_example.py``. It builds a small index with a
local embedding and the extractive stand-in LLM, wraps the engine in
``TracedQueryEngine``, bridges LlamaIndex's own instrumentation with
``instrument()``, and prints the span tree, the JSON log line and a few
metrics. Nothing leaves the process; no API key is needed.
"""

from __future__ import annotations

import asyncio
import io
import json

import structlog
from llama_index.core import Document, VectorStoreIndex
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ragprod.logging import configure_logging
from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, HashEmbedding
from ragprod.tracing import TracedQueryEngine, instrument, uninstrument

DOCS = [
    "Refunds are paid within 5 business days after the return arrives.",
    "Orders ship from Berlin within 2 days; express shipping takes 1 day.",
    "Support answers e-mails within 24 hours, seven days a week.",
    "Gift cards never expire and cannot be exchanged for cash.",
]


def print_tree(spans: tuple[ReadableSpan, ...]) -> None:
    """Print spans as an indented tree, parents first."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in spans:
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent, []).append(span)

    def walk(parent: int | None, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: s.start_time or 0):
            duration_ms = ((span.end_time or 0) - (span.start_time or 0)) / 1e6
            print(f"  {'  ' * depth}{span.name}  ({duration_ms:.2f} ms)")
            walk(span.context.span_id, depth + 1)

    walk(None, 0)


def main() -> None:
    # Your application owns the tracer provider; ragprod never sets the global one.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    metrics = RagMetrics()
    logs = io.StringIO()
    configure_logging(stream=logs)  # JSON lines with trace ids, PII scrubbed

    index = VectorStoreIndex.from_documents(
        [Document(text=text) for text in DOCS], embed_model=HashEmbedding()
    )
    engine = TracedQueryEngine(
        index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=2),
        tracer_provider=provider,
        metrics=metrics,
        name="shop-faq",
    )
    instrument(provider, metrics=metrics)  # LlamaIndex steps become child spans
    try:
        answer = engine.query("How long do refunds take? My mail is jane@example.com")
        print("answer:", answer)
        print("spans:")
        print_tree(tuple(exporter.get_finished_spans()))

        asyncio.run(engine.aquery("When do orders ship?"))
    finally:
        uninstrument()
        structlog.reset_defaults()

    print("log lines:")
    for line in logs.getvalue().splitlines():
        event = json.loads(line)
        print("  " + json.dumps({k: event[k] for k in sorted(event) if k != "timestamp"}))
    assert "jane@example.com" not in logs.getvalue()

    ok = metrics.value("ragprod_query_requests_total", engine="shop-faq", outcome="success")
    tokens = metrics.value(
        "ragprod_llm_tokens_total", model="ragprod-extractive", direction="input"
    )
    print(f"metrics: {ok:.0f} successful queries, {tokens:.0f} LLM input tokens")


if __name__ == "__main__":
    main()
