"""Fixtures for the tracing tests: a private tracer provider, metrics and a small index."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from llama_index.core import Document, VectorStoreIndex
from opentelemetry import trace

from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, HashEmbedding, SpanCapture, capture_logs, capture_spans
from ragprod.tracing import instrument, uninstrument
from ragprod.tracing._instrument import installed

CANARY = "canary.person.4711@example.com"


@pytest.fixture
def spans() -> Iterator[SpanCapture]:
    """A private SDK tracer provider with an in-memory exporter."""
    with capture_spans() as captured:
        yield captured


@pytest.fixture
def metrics() -> RagMetrics:
    """A RagMetrics on a fresh private registry."""
    return RagMetrics()


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    """Structlog events logged during the test."""
    with capture_logs() as events:
        yield events


@pytest.fixture(scope="session")
def index() -> VectorStoreIndex:
    """A VectorStoreIndex over 200 short documents with a local hash embedding."""
    docs = [
        Document(
            text=f"Policy {i}: refunds for order class {i % 7} are paid within {i % 30 + 1} days. "
            f"Shipping zone {i % 11} takes {i % 5 + 2} days.",
            doc_id=f"doc-{i}",
        )
        for i in range(200)
    ]
    return VectorStoreIndex.from_documents(docs, embed_model=HashEmbedding())


@pytest.fixture
def make_engine(index: VectorStoreIndex) -> Any:
    """Build a query engine over the shared index: ``make_engine(top_k=3, streaming=False)``."""

    def make(top_k: int = 3, streaming: bool = False, **kwargs: Any) -> Any:
        return index.as_query_engine(
            llm=ExtractiveLLM(), similarity_top_k=top_k, streaming=streaming, **kwargs
        )

    return make


@pytest.fixture
def bridge(spans: SpanCapture, metrics: RagMetrics) -> Iterator[SpanCapture]:
    """``instrument()`` on the private provider for the test, removed afterwards."""
    instrument(spans.provider, metrics=metrics)
    try:
        yield spans
    finally:
        uninstrument()


@pytest.fixture(autouse=True)
def _clean_state() -> Iterator[None]:
    """No test leaves the bridge installed, a span attached or structlog configured."""
    yield
    uninstrument()
    assert installed() is None
    assert not trace.get_current_span().get_span_context().is_valid
    structlog.reset_defaults()
