"""harden(): one call composes the available layers in DESIGN.md's order."""

from __future__ import annotations

from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler

import ragprod
from ragprod._harden import LAYERS
from ragprod.errors import ConfigurationError, QueryRejectedError
from ragprod.guard import QueryGuard
from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, FaultyQueryEngine, HashEmbedding


def small_index() -> VectorStoreIndex:
    return VectorStoreIndex.from_documents(
        [
            Document(text="Refunds are paid within five business days."),
            Document(text="Redis failover promotes the replica."),
        ],
        embed_model=HashEmbedding(),
    )


def test_harden_an_index_passes_engine_kwargs(run_query: Any) -> None:
    """An index is turned into a query engine with the given keyword arguments."""
    engine = ragprod.harden(small_index(), llm=ExtractiveLLM(), similarity_top_k=1)
    response = run_query(engine, "When are refunds paid?")
    assert str(response) == "Refunds are paid within five business days."
    assert len(response.source_nodes) == 1


def test_harden_with_guard_rejects_bad_queries(run_query: Any) -> None:
    """guard=True puts a default QueryGuard in front of the engine."""
    inner = FaultyQueryEngine()
    engine = ragprod.harden(inner, guard=True)
    with pytest.raises(QueryRejectedError):
        run_query(engine, "")
    assert str(run_query(engine, "fine")) == "ok"
    assert inner.calls == 1


def test_layers_share_the_given_metrics() -> None:
    """Layers count on the RagMetrics passed to harden."""
    metrics = RagMetrics()
    engine = ragprod.harden(FaultyQueryEngine(), guard=QueryGuard(max_chars=3), metrics=metrics)
    with pytest.raises(QueryRejectedError):
        engine.query("too long")
    assert engine.metrics is metrics
    assert metrics.value("ragprod_guard_rejections_total", reason="too_long") == 1.0


def test_layer_order_follows_design() -> None:
    """Enabled layers appear outermost first in the documented order."""
    engine = ragprod.harden(FaultyQueryEngine(), guard=True)
    names = list(engine.layers)
    order = [layer for layer, _ in LAYERS]
    assert names == sorted(names, key=order.index)
    assert "guard" in names
    assert repr(engine).startswith("<HardenedQueryEngine ")


def test_harden_costs_one_dispatcher_span_per_request() -> None:
    """However many layers, the shell adds exactly one LlamaIndex span per query."""
    handler = SimpleSpanHandler()
    dispatcher = get_dispatcher()
    dispatcher.add_span_handler(handler)
    try:
        inner = FaultyQueryEngine()
        inner.query("q")
        bare = len(handler.completed_spans)
        engine = ragprod.harden(inner, guard=True)
        engine.query("q")
        assert len(handler.completed_spans) - bare == bare + 1
    finally:
        dispatcher.span_handlers.remove(handler)


def test_engine_kwargs_with_an_engine_are_a_configuration_error() -> None:
    """as_query_engine arguments make no sense for an engine."""
    with pytest.raises(ConfigurationError, match="similarity_top_k"):
        ragprod.harden(FaultyQueryEngine(), similarity_top_k=3)


def test_harden_rejects_other_objects() -> None:
    """Only indexes and query engines can be hardened."""
    with pytest.raises(TypeError, match="got str"):
        ragprod.harden("not an engine")  # type: ignore[arg-type]


def test_wrong_layer_type_is_a_type_error() -> None:
    """A layer argument of the wrong type fails loudly."""
    with pytest.raises(TypeError, match="QueryGuard"):
        ragprod.harden(FaultyQueryEngine(), guard="strict")


def test_everything_off_still_works(run_query: Any) -> None:
    """With every layer off, the hardened engine is a transparent shell."""
    engine = ragprod.harden(FaultyQueryEngine(answer="plain"), tracing=False)
    assert str(run_query(engine, "q")) == "plain"
    assert engine.layers == {}
