"""TracedQueryEngine: one span, metrics and one log event per query, on the real OTel SDK."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    StreamingResponse,
)
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import QueryBundle
from opentelemetry import trace
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import StatusCode

from ragprod.metrics import RagMetrics
from ragprod.testing import FaultyQueryEngine, SpanCapture, capture_spans
from ragprod.tracing import TracedQueryEngine, current_query

from .conftest import CANARY


def traced(inner: BaseQueryEngine, spans: SpanCapture, metrics: RagMetrics, **kw: Any) -> Any:
    return TracedQueryEngine(
        inner, tracer_provider=spans.provider, metrics=metrics, name="docs", **kw
    )


def test_one_span_metrics_and_log_per_query(
    run_query: Any, spans: SpanCapture, metrics: RagMetrics, logs: list[dict[str, Any]]
) -> None:
    """A query makes one INTERNAL 'query docs' root span, counts success, logs one event."""
    engine = traced(FaultyQueryEngine(answer="42"), spans, metrics)
    assert str(run_query(engine, "what is it?")) == "42"
    (span,) = spans.spans
    assert span.name == "query docs"
    assert span.kind == trace.SpanKind.INTERNAL
    assert span.parent is None
    assert span.status.status_code == StatusCode.UNSET
    assert span.attributes is not None
    assert span.attributes["ragprod.engine"] == "docs"
    assert span.attributes["ragprod.outcome"] == "success"
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="success") == 1
    assert metrics.value("ragprod_query_duration_seconds_count", engine="docs", outcome="success")
    assert metrics.value("ragprod_query_in_flight", engine="docs") == 0
    (event,) = [e for e in logs if e["event"].startswith("ragprod.query")]
    assert event["event"] == "ragprod.query.completed"
    assert event["trace_id"] == format(span.context.trace_id, "032x")
    assert event["span_id"] == format(span.context.span_id, "016x")
    assert "query" not in event


def test_span_is_current_inside_the_wrapped_engine(spans: SpanCapture, metrics: RagMetrics) -> None:
    """The wrapped engine runs with the query span current and the query record available."""
    seen: list[Any] = []

    def answer(query: str) -> str:
        seen.append((trace.get_current_span().get_span_context(), current_query()))
        return "ok"

    engine = traced(FaultyQueryEngine(answer=answer), spans, metrics)
    engine.query("q")
    (span,) = spans.spans
    assert seen[0][0].span_id == span.context.span_id
    assert seen[0][1] is not None
    assert current_query() is None


def test_caller_span_becomes_the_parent(spans: SpanCapture, metrics: RagMetrics) -> None:
    """A query inside the caller's own span is that span's child, in the caller's trace."""
    engine = traced(FaultyQueryEngine(), spans, metrics)
    tracer = spans.provider.get_tracer("app")
    with tracer.start_as_current_span("request") as outer:
        engine.query("q")
    query_span = spans.named("query docs")[0]
    assert query_span.parent is not None
    assert query_span.parent.span_id == outer.get_span_context().span_id
    assert query_span.context.trace_id == outer.get_span_context().trace_id


def test_failure_records_error_and_reraises_original(
    run_query: Any, spans: SpanCapture, metrics: RagMetrics, logs: list[dict[str, Any]]
) -> None:
    """A failing engine: status ERROR, exception event, same exception object, error counted."""
    boom = ConnectionError("upstream down")
    engine = traced(FaultyQueryEngine(fail_always=boom), spans, metrics)
    with pytest.raises(ConnectionError) as caught:
        run_query(engine, "q")
    assert caught.value is boom
    (span,) = spans.spans
    assert span.status.status_code == StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes["error.type"] == "ConnectionError"
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ConnectionError"
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="error") == 1
    assert (
        metrics.value("ragprod_query_errors_total", engine="docs", error_type="ConnectionError")
        == 1
    )
    assert metrics.value("ragprod_query_in_flight", engine="docs") == 0
    (failed,) = [e for e in logs if e["event"] == "ragprod.query.failed"]
    assert failed["error_type"] == "ConnectionError"
    assert failed["trace_id"] == format(span.context.trace_id, "032x")


def test_failure_detaches_context_so_next_query_is_a_new_trace(
    spans: SpanCapture, metrics: RagMetrics
) -> None:
    """After a failed query no span stays current; the next query starts its own trace."""
    engine = traced(FaultyQueryEngine(failures={1: RuntimeError("x")}), spans, metrics)
    with pytest.raises(RuntimeError):
        engine.query("first")
    assert not trace.get_current_span().get_span_context().is_valid
    engine.query("second")
    first, second = spans.spans
    assert second.parent is None
    assert second.context.trace_id != first.context.trace_id


def test_exception_message_is_scrubbed_on_the_span(spans: SpanCapture, metrics: RagMetrics) -> None:
    """PII inside an upstream exception message never reaches the span's exception event."""
    failure = ValueError(f"bad query {CANARY}")
    engine = traced(FaultyQueryEngine(fail_always=failure), spans, metrics)
    with pytest.raises(ValueError, match="canary"):
        engine.query("q")
    (span,) = spans.spans
    (event,) = span.events
    assert event.attributes is not None
    assert CANARY not in str(event.attributes["exception.message"])
    assert CANARY not in str(event.attributes["exception.stacktrace"])
    assert "<EMAIL>" in str(event.attributes["exception.message"])


def test_cancelled_query_counts_as_cancelled(spans: SpanCapture, metrics: RagMetrics) -> None:
    """A cancelled aquery ends its span, counts outcome=cancelled and leaves nothing in flight."""

    async def never(_: float) -> None:
        await asyncio.Event().wait()

    engine = traced(FaultyQueryEngine(latency=1.0, asleep=never), spans, metrics)

    async def main() -> None:
        task = asyncio.create_task(engine.aquery("q"))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (span,) = spans.spans
    assert span.attributes is not None
    assert span.attributes["ragprod.outcome"] == "cancelled"
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="cancelled") == 1
    assert metrics.value("ragprod_query_in_flight", engine="docs") == 0


def test_streaming_span_stays_open_until_stream_is_consumed(
    spans: SpanCapture, metrics: RagMetrics, logs: list[dict[str, Any]]
) -> None:
    """A sync stream: no span before consumption, one span with TTFT after the last token."""
    engine = traced(FaultyQueryEngine(answer="one two three", streaming=True), spans, metrics)
    response = engine.query("q")
    assert isinstance(response, StreamingResponse)
    assert spans.spans == ()
    assert metrics.value("ragprod_query_in_flight", engine="docs") == 1
    assert "".join(response.response_gen) == "one two three"
    (span,) = spans.spans
    assert span.attributes is not None
    assert span.attributes["ragprod.outcome"] == "success"
    assert "ragprod.stream.time_to_first_token_s" in span.attributes
    assert metrics.value("ragprod_query_time_to_first_token_seconds_count", engine="docs") == 1
    assert metrics.value("ragprod_query_in_flight", engine="docs") == 0
    assert [e["event"] for e in logs] == ["ragprod.query.completed"]


def test_async_streaming_span_ends_when_stream_is_exhausted(
    spans: SpanCapture, metrics: RagMetrics
) -> None:
    """An async stream (aquery) ends its span after the last token, in the same trace."""
    engine = traced(FaultyQueryEngine(answer="a b c d", streaming=True), spans, metrics)

    async def main() -> str:
        response = await engine.aquery("q")
        assert isinstance(response, AsyncStreamingResponse)
        assert spans.spans == ()
        return "".join([piece async for piece in response.async_response_gen()])

    assert asyncio.run(main()) == "a b c d"
    (span,) = spans.spans
    assert span.attributes is not None
    assert span.attributes["ragprod.outcome"] == "success"
    assert metrics.value("ragprod_query_time_to_first_token_seconds_count", engine="docs") == 1


def test_stream_closed_early_ends_span_as_cancelled(
    spans: SpanCapture, metrics: RagMetrics
) -> None:
    """Closing a stream after one token ends the span once, outcome cancelled."""
    engine = traced(FaultyQueryEngine(answer="a b c", streaming=True), spans, metrics)
    response = engine.query("q")
    assert isinstance(response, StreamingResponse)
    stream: Any = response.response_gen
    assert next(stream) == "a "
    stream.close()
    stream.close()
    (span,) = spans.spans
    assert span.attributes is not None
    assert span.attributes["ragprod.outcome"] == "cancelled"
    assert metrics.value("ragprod_query_in_flight", engine="docs") == 0


def test_abandoned_stream_still_ends_its_span(spans: SpanCapture, metrics: RagMetrics) -> None:
    """A stream that is dropped without being read ends its span when collected."""
    engine = traced(FaultyQueryEngine(answer="a b", streaming=True), spans, metrics)
    response = engine.query("q")
    del response
    gc.collect()
    (span,) = spans.spans
    assert span.attributes is not None
    assert span.attributes["ragprod.outcome"] == "cancelled"


class _BrokenStreamEngine(BaseQueryEngine):
    """Streams one token, then fails."""

    def __init__(self) -> None:
        super().__init__(callback_manager=None)

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        def gen() -> Generator[str, None, None]:
            yield "first "
            raise ConnectionResetError("stream cut")

        return StreamingResponse(response_gen=gen())

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        async def gen() -> AsyncGenerator[str, None]:
            yield "first "
            raise ConnectionResetError("stream cut")

        return AsyncStreamingResponse(response_gen=gen())


def test_stream_failure_midway_marks_span_error(spans: SpanCapture, metrics: RagMetrics) -> None:
    """An exception while streaming ends the span with ERROR and propagates unchanged."""
    engine = traced(_BrokenStreamEngine(), spans, metrics)
    response = engine.query("q")
    assert isinstance(response, StreamingResponse)
    with pytest.raises(ConnectionResetError):
        list(response.response_gen)
    (span,) = spans.spans
    assert span.status.status_code == StatusCode.ERROR
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="error") == 1


def test_async_stream_failure_midway_marks_span_error(
    spans: SpanCapture, metrics: RagMetrics
) -> None:
    """An exception in an async stream ends the span with ERROR."""
    engine = traced(_BrokenStreamEngine(), spans, metrics)

    async def main() -> None:
        response = await engine.aquery("q")
        assert isinstance(response, AsyncStreamingResponse)
        with pytest.raises(ConnectionResetError):
            async for _ in response.async_response_gen():
                pass

    asyncio.run(main())
    (span,) = spans.spans
    assert span.status.status_code == StatusCode.ERROR


def test_unsampled_queries_still_count_and_log(metrics: RagMetrics, logs: list[Any]) -> None:
    """With ALWAYS_OFF nothing is exported, but metrics count and the log has a trace id."""
    with capture_spans(sampler=ALWAYS_OFF) as spans:
        engine = traced(FaultyQueryEngine(), spans, metrics)
        engine.query("q")
        assert spans.spans == ()
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="success") == 1
    (event,) = logs
    assert len(event["trace_id"]) == 32


def test_capture_content_is_scrubbed_and_truncated(spans: SpanCapture, metrics: RagMetrics) -> None:
    """With content capture on, text is scrubbed of PII and cut to max_attribute_chars."""
    query = f"write to {CANARY} about " + "refunds " * 50
    engine = traced(
        FaultyQueryEngine(answer="answer " * 50),
        spans,
        metrics,
        capture_content=True,
        max_attribute_chars=64,
    )
    engine.query(query)
    (span,) = spans.spans
    assert span.attributes is not None
    text = str(span.attributes["ragprod.query.text"])
    assert len(text) == 64
    assert text.startswith("write to <EMAIL> about refunds")
    assert text.endswith("...[truncated]")
    assert len(str(span.attributes["ragprod.response.text"])) == 64


def test_no_content_on_spans_by_default(spans: SpanCapture, metrics: RagMetrics) -> None:
    """By default neither the query nor the answer appear in any span attribute."""
    engine = traced(FaultyQueryEngine(answer=lambda q: q), spans, metrics)
    engine.query(f"secret question {CANARY}")
    (span,) = spans.spans
    assert span.attributes is not None
    assert all(CANARY not in str(value) for value in span.attributes.values())
    assert all("secret" not in str(value) for value in span.attributes.values())


def test_wrapper_is_a_query_engine_that_forwards(metrics: RagMetrics) -> None:
    """TracedQueryEngine is a BaseQueryEngine whose repr shows the tracing layer."""
    inner = FaultyQueryEngine()
    engine = TracedQueryEngine(inner, metrics=metrics)
    assert engine.engine is inner
    assert "tracing" in repr(engine)
    assert engine.tracing_step.engine_name == "FaultyQueryEngine"


def test_traced_engine_adds_no_dispatcher_span_of_its_own(
    bridge: SpanCapture, metrics: RagMetrics
) -> None:
    """Under instrument(), the query span's only child is the wrapped engine's query span."""
    engine = traced(FaultyQueryEngine(), bridge, metrics)
    engine.query(QueryBundle("q"))
    assert bridge.names() == ["query FaultyQueryEngine", "query docs"]


def test_non_text_query_is_a_type_error(metrics: RagMetrics) -> None:
    """A query that is neither str nor QueryBundle is a TypeError before any span starts."""
    engine = TracedQueryEngine(FaultyQueryEngine(), metrics=metrics)
    with pytest.raises(TypeError, match="QueryBundle"):
        engine.query(42)  # type: ignore[arg-type]
    assert metrics.value("ragprod_query_in_flight", engine="FaultyQueryEngine") == 0
    assert not metrics.value(
        "ragprod_query_requests_total", engine="FaultyQueryEngine", outcome="error"
    )


def test_broken_exporter_never_breaks_the_query(metrics: RagMetrics) -> None:
    """An exporter that raises (collector down) loses spans, not queries."""
    from collections.abc import Sequence

    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class DownExporter(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            raise ConnectionRefusedError("collector down")

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(DownExporter()))
    engine = TracedQueryEngine(
        FaultyQueryEngine(answer="fine"), tracer_provider=provider, metrics=metrics, name="docs"
    )
    assert str(engine.query("q")) == "fine"
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="success") == 1


def test_durations_come_from_the_injected_clock(
    spans: SpanCapture, metrics: RagMetrics, logs: list[dict[str, Any]]
) -> None:
    """With Tracing(clock=FakeClock), the histogram and the log event show the scripted time."""
    from ragprod.testing import FakeClock
    from ragprod.tracing import Tracing

    clock = FakeClock()
    engine = TracedQueryEngine(
        FaultyQueryEngine(latency=2.5, sleep=clock.sleep),
        metrics=metrics,
        name="docs",
        tracing=Tracing(tracer_provider=spans.provider, clock=clock),
    )
    engine.query("q")
    total = metrics.value("ragprod_query_duration_seconds_sum", engine="docs", outcome="success")
    assert total == 2.5
    assert logs[0]["duration_ms"] == 2500.0


def test_log_events_can_be_turned_off(metrics: RagMetrics, logs: list[dict[str, Any]]) -> None:
    """Tracing(log_events=False) keeps metrics but emits no query event."""
    from ragprod.tracing import Tracing

    engine = TracedQueryEngine(
        FaultyQueryEngine(), metrics=metrics, name="docs", tracing=Tracing(log_events=False)
    )
    engine.query("q")
    assert logs == []
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="success") == 1


def test_options_and_tracing_object_are_exclusive(metrics: RagMetrics) -> None:
    """Giving tracing= and a separate option is a ConfigurationError."""
    from ragprod.errors import ConfigurationError
    from ragprod.tracing import Tracing

    with pytest.raises(ConfigurationError):
        TracedQueryEngine(FaultyQueryEngine(), capture_content=True, tracing=Tracing())


def test_a_broken_scrubber_withholds_text_and_never_breaks_the_query(
    spans: SpanCapture, metrics: RagMetrics
) -> None:
    """If the user's scrubber raises, content is withheld and errors pass through unchanged."""
    from ragprod.tracing import Tracing
    from ragprod.tracing._attrs import UNSCRUBBABLE

    def broken(text: str) -> str:
        raise RuntimeError("scrubber bug")

    config = Tracing(tracer_provider=spans.provider, capture_content=True, scrubber=broken)
    ok = TracedQueryEngine(FaultyQueryEngine(), metrics=metrics, name="docs", tracing=config)
    assert str(ok.query(CANARY)) == "ok"
    failing = TracedQueryEngine(
        FaultyQueryEngine(fail_always=KeyError(CANARY)), metrics=metrics, tracing=config
    )
    with pytest.raises(KeyError):
        failing.query("q")
    first, second = spans.spans
    assert first.attributes is not None
    assert first.attributes["ragprod.query.text"] == UNSCRUBBABLE
    (event,) = second.events
    assert event.attributes is not None
    assert event.attributes["exception.message"] == UNSCRUBBABLE
