"""TracedRetriever: a span and a histogram around a retriever, sync and truly async."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from opentelemetry.trace import StatusCode

from ragprod.metrics import RagMetrics
from ragprod.testing import SpanCapture
from ragprod.tracing import TracedRetriever


class AsyncOnlyRetriever(BaseRetriever):
    """Fails if the blocking path is used; answers on the async path."""

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        raise AssertionError("the sync path must not be used by aretrieve")

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        await asyncio.sleep(0)
        return [NodeWithScore(node=TextNode(text="async", id_="n1"), score=0.5)]


class FailingRetriever(BaseRetriever):
    """A vector store that is down."""

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        raise ConnectionRefusedError("vector store down")

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        raise ConnectionRefusedError("vector store down")


def wrap(inner: BaseRetriever, spans: SpanCapture, metrics: RagMetrics, **kw: Any) -> Any:
    return TracedRetriever(inner, tracer_provider=spans.provider, metrics=metrics, **kw)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_retrieval_span_has_top_k_ids_and_scores(
    mode: str, spans: SpanCapture, metrics: RagMetrics, index: Any
) -> None:
    """A retrieval records top_k, node count, ids and best-first scores, and its duration."""
    retriever = wrap(index.as_retriever(similarity_top_k=5), spans, metrics, name="docs")
    if mode == "sync":
        nodes = retriever.retrieve("refunds for order class 2")
    else:
        nodes = asyncio.run(retriever.aretrieve("refunds for order class 2"))
    assert len(nodes) == 5
    (span,) = spans.spans
    assert span.name == "retrieve docs"
    attributes = span.attributes
    assert attributes is not None
    assert attributes["ragprod.retrieval.top_k"] == 5
    assert attributes["ragprod.retrieval.node_count"] == 5
    assert list(attributes["ragprod.retrieval.node_ids"]) == [n.node.node_id for n in nodes]  # type: ignore[arg-type]
    assert "ragprod.query.text" not in attributes
    assert metrics.value("ragprod_retrieval_duration_seconds_count", retriever="docs") == 1


def test_aretrieve_awaits_the_inner_async_path(spans: SpanCapture, metrics: RagMetrics) -> None:
    """aretrieve never falls back to the blocking sync retrieval."""
    retriever = wrap(AsyncOnlyRetriever(), spans, metrics)
    nodes = asyncio.run(retriever.aretrieve("q"))
    assert [n.node.get_content() for n in nodes] == ["async"]
    assert spans.names() == ["retrieve AsyncOnlyRetriever"]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_failing_retriever_marks_span_error(
    mode: str, spans: SpanCapture, metrics: RagMetrics
) -> None:
    """A failing vector store: span ERROR with an exception event, original error raised."""
    retriever = wrap(FailingRetriever(), spans, metrics)
    with pytest.raises(ConnectionRefusedError):
        if mode == "sync":
            retriever.retrieve("q")
        else:
            asyncio.run(retriever.aretrieve("q"))
    (span,) = spans.spans
    assert span.status.status_code == StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_capture_content_records_query_and_texts(
    spans: SpanCapture, metrics: RagMetrics, index: Any
) -> None:
    """With content capture on, the query and each node text are recorded, truncated."""
    retriever = wrap(
        index.as_retriever(similarity_top_k=2),
        spans,
        metrics,
        capture_content=True,
        max_attribute_chars=20,
    )
    retriever.retrieve("refunds")
    (span,) = spans.spans
    assert span.attributes is not None
    assert span.attributes["ragprod.query.text"] == "refunds"
    documents = list(span.attributes["ragprod.retrieval.documents"])  # type: ignore[arg-type]
    assert len(documents) == 2
    assert all(len(str(d)) == 20 for d in documents)


def test_rejects_non_retrievers(metrics: RagMetrics) -> None:
    """Wrapping something that is not a BaseRetriever is a TypeError."""
    with pytest.raises(TypeError, match="BaseRetriever"):
        TracedRetriever(object(), metrics=metrics)  # type: ignore[arg-type]


def test_traced_retriever_inside_an_instrumented_engine(
    bridge: SpanCapture, metrics: RagMetrics, index: Any
) -> None:
    """Under instrument(), TracedRetriever's span wraps the inner retrieval once, no duplicate."""
    from llama_index.core.query_engine import RetrieverQueryEngine

    from ragprod.testing import ExtractiveLLM

    retriever = wrap(index.as_retriever(similarity_top_k=2), bridge, metrics, name="docs")
    engine = RetrieverQueryEngine.from_args(retriever, llm=ExtractiveLLM())
    engine.query("refunds?")
    names = bridge.names()
    assert names.count("retrieve docs") == 1
    assert "retrieve TracedRetriever" not in names
    (outer,) = bridge.named("retrieve docs")
    (inner,) = bridge.named("retrieve VectorIndexRetriever")
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
