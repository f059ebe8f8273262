"""The harden() hook: make_step, the Tracing config, and tracing as the outermost layer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.trace import StatusCode

import ragprod
from ragprod.errors import ConfigurationError, QueryRejectedError
from ragprod.metrics import RagMetrics
from ragprod.testing import FaultyQueryEngine, SpanCapture
from ragprod.tracing import Tracing, current_query
from ragprod.tracing._attrs import TRUNCATED, clip
from ragprod.tracing._query import TracingStep
from ragprod.tracing._step import make_step


def test_make_step_true_means_default_tracing(metrics: RagMetrics) -> None:
    """make_step(True) builds a TracingStep with default options and the given name."""
    step = make_step(True, engine=FaultyQueryEngine(), metrics=metrics, name="docs")
    assert isinstance(step, TracingStep)
    assert step.name == "tracing"
    assert step.engine_name == "docs"
    assert step.config == Tracing()


def test_make_step_rejects_other_configs(metrics: RagMetrics) -> None:
    """Anything but True or a Tracing is a TypeError naming the type."""
    with pytest.raises(TypeError, match="Tracing"):
        make_step("yes", engine=FaultyQueryEngine(), metrics=metrics, name="docs")  # type: ignore[arg-type]


@pytest.mark.parametrize("chars", [0, 15, -1, True, 2.5])
def test_tracing_rejects_bad_attribute_limits(chars: Any) -> None:
    """max_attribute_chars below 16 or not an int is a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        Tracing(max_attribute_chars=chars)


def test_harden_traces_the_whole_chain(
    run_query: Any, spans: SpanCapture, metrics: RagMetrics
) -> None:
    """harden(tracing=Tracing(...)) puts one query span around every other layer."""
    engine = ragprod.harden(
        FaultyQueryEngine(answer="ok"),
        tracing=Tracing(tracer_provider=spans.provider),
        guard=True,
        metrics=metrics,
        name="shop",
    )
    assert str(run_query(engine, "hello")) == "ok"
    assert spans.names() == ["query shop"]
    assert metrics.value("ragprod_query_requests_total", engine="shop", outcome="success") == 1


def test_guard_rejection_is_an_error_on_the_span(spans: SpanCapture, metrics: RagMetrics) -> None:
    """A query the guard rejects is recorded as an error of type QueryRejectedError."""
    engine = ragprod.harden(
        FaultyQueryEngine(),
        tracing=Tracing(tracer_provider=spans.provider),
        guard=ragprod.guard.QueryGuard(max_chars=5),
        metrics=metrics,
        name="shop",
    )
    with pytest.raises(QueryRejectedError):
        engine.query("far too long")
    (span,) = spans.spans
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ragprod.errors.QueryRejectedError"


def test_inner_layers_annotate_the_query(spans: SpanCapture, metrics: RagMetrics) -> None:
    """Facts an inner layer adds via current_query() land on the span and in the log event."""

    def answer(query: str) -> str:
        record = current_query()
        assert record is not None
        record.annotate(cache_tier="l1", cache_hit=True)
        return "ok"

    engine = ragprod.harden(
        FaultyQueryEngine(answer=answer),
        tracing=Tracing(tracer_provider=spans.provider),
        metrics=metrics,
        name="shop",
    )
    from ragprod.testing import capture_logs

    with capture_logs() as events:
        engine.query("q")
    (span,) = spans.spans
    assert span.attributes is not None
    assert span.attributes["ragprod.cache_tier"] == "l1"
    assert span.attributes["ragprod.cache_hit"] is True
    assert events[0]["cache_tier"] == "l1"


@given(text=st.text(max_size=300), limit=st.integers(min_value=16, max_value=200))
def test_clip_never_exceeds_the_limit(text: str, limit: int) -> None:
    """clip() returns text of at most `limit` chars, unchanged when short enough."""
    clipped = clip(text, limit, None)
    assert len(clipped) <= limit
    if len(text) <= limit:
        assert clipped == text
    else:
        assert clipped.endswith(TRUNCATED)
        assert text.startswith(clipped[: -len(TRUNCATED)])


def test_tracing_step_is_a_query_step(metrics: RagMetrics) -> None:
    """The step satisfies the pipeline's QueryStep protocol."""
    from ragprod._pipeline import QueryStep

    step = make_step(Tracing(), engine=FaultyQueryEngine(), metrics=metrics, name="docs")
    assert isinstance(step, QueryStep)
    assert "docs" in repr(step)
