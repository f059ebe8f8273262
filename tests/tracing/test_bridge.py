"""instrument()/uninstrument(): LlamaIndex dispatcher spans become correctly parented OTel spans."""

from __future__ import annotations

import asyncio
import io
import tracemalloc
from collections import Counter
from typing import Any

import pytest
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import NodeWithScore, QueryBundle
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import generate_latest

from ragprod.logging import configure_logging
from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, SpanCapture, capture_spans
from ragprod.tracing import TracedQueryEngine, instrument, uninstrument
from ragprod.tracing._instrument import installed

from .conftest import CANARY


def traced(inner: Any, spans: SpanCapture, metrics: RagMetrics, **kw: Any) -> TracedQueryEngine:
    return TracedQueryEngine(
        inner, tracer_provider=spans.provider, metrics=metrics, name="docs", **kw
    )


def assert_one_tree(spans: tuple[ReadableSpan, ...], root_name: str = "query docs") -> None:
    """All spans share one trace, have one root, and every parent is in the trace."""
    assert len({s.context.trace_id for s in spans}) == 1
    roots = [s for s in spans if s.parent is None]
    assert [r.name for r in roots] == [root_name]
    ids = {s.context.span_id for s in spans}
    assert all(s.parent.span_id in ids for s in spans if s.parent is not None)


def test_pipeline_steps_become_child_spans(
    run_query: Any, bridge: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """Retrieval, embedding, synthesis and the LLM call are children in the query's trace."""
    engine = traced(make_engine(top_k=3), bridge, metrics)
    run_query(engine, "how long do refunds take?")
    spans = bridge.spans
    assert_one_tree(spans)
    names = Counter(s.name for s in spans)
    for expected in (
        "query RetrieverQueryEngine",
        "retrieve VectorIndexRetriever",
        "embeddings ragprod-hash-256",
        "synthesize CompactAndRefine",
        "text_completion ragprod-extractive",
    ):
        assert names[expected] == 1, (expected, names)
    assert not any("StepQueryEngine" in n or "TracedQueryEngine" in n for n in names)
    (llm,) = bridge.named("text_completion ragprod-extractive")
    assert llm.kind == SpanKind.CLIENT
    assert llm.attributes is not None
    assert llm.attributes["gen_ai.operation.name"] == "text_completion"
    assert llm.attributes["gen_ai.request.model"] == "ragprod-extractive"
    assert int(str(llm.attributes["gen_ai.usage.input_tokens"])) > 0
    (retrieve,) = bridge.named("retrieve VectorIndexRetriever")
    assert retrieve.attributes is not None
    assert retrieve.attributes["ragprod.retrieval.top_k"] == 3
    assert retrieve.attributes["ragprod.retrieval.node_count"] == 3
    (root,) = bridge.named("query docs")
    assert root.attributes is not None
    assert (
        root.attributes["gen_ai.usage.input_tokens"] == llm.attributes["gen_ai.usage.input_tokens"]
    )
    tokens = metrics.value(
        "ragprod_llm_tokens_total", model="ragprod-extractive", direction="input"
    )
    assert tokens == llm.attributes["gen_ai.usage.input_tokens"]


def test_instrument_alone_roots_at_the_llamaindex_query(
    bridge: SpanCapture, make_engine: Any
) -> None:
    """Without TracedQueryEngine, LlamaIndex's own query span is the root of one trace."""
    make_engine().query("refunds?")
    assert_one_tree(bridge.spans, root_name="query RetrieverQueryEngine")


def test_instrument_twice_does_not_double_spans(
    spans: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """Calling instrument() again with the same arguments keeps exactly one bridge."""
    root = get_dispatcher()
    before = len(root.span_handlers)
    instrument(spans.provider, metrics=metrics)
    engine = traced(make_engine(), spans, metrics)
    engine.query("refunds?")
    once = len(spans.spans)
    spans.clear()
    instrument(spans.provider, metrics=metrics)
    assert len(root.span_handlers) == before + 1
    engine.query("refunds?")
    assert len(spans.spans) == once


def test_reinstrument_with_new_provider_replaces_the_bridge(
    spans: SpanCapture, make_engine: Any
) -> None:
    """instrument() with another provider moves the bridge; the old provider gets nothing."""
    instrument(spans.provider)
    with capture_spans() as other:
        instrument(other.provider)
        make_engine().query("refunds?")
        assert other.spans
    assert spans.spans == ()


def test_uninstrument_removes_every_handler(spans: SpanCapture, make_engine: Any) -> None:
    """After uninstrument() the dispatcher's handler lists are as before and no spans appear."""
    root = get_dispatcher()
    span_handlers, event_handlers = list(root.span_handlers), list(root.event_handlers)
    instrument(spans.provider)
    assert len(root.span_handlers) == len(span_handlers) + 1
    assert len(root.event_handlers) == len(event_handlers) + 1
    uninstrument()
    uninstrument()
    assert root.span_handlers == span_handlers
    assert root.event_handlers == event_handlers
    assert installed() is None
    make_engine().query("refunds?")
    assert spans.spans == ()


def test_no_state_or_memory_kept_per_query(
    bridge: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """Between queries the bridge holds no spans, and hundreds of queries do not grow it."""
    handler = installed()
    assert handler is not None
    engine = traced(make_engine(), bridge, metrics)
    for _ in range(20):
        engine.query("refunds?")
    bridge.clear()
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for _ in range(200):
            engine.query("refunds?")
            bridge.clear()
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert handler.open_count == 0
    assert not handler.llm_calls
    root = get_dispatcher()
    for registered in root.span_handlers:
        assert not registered.open_spans
        assert not registered.completed_spans
    ours = [tracemalloc.Filter(True, "*/ragprod/tracing/*")]
    growth = sum(
        stat.size_diff
        for stat in after.filter_traces(ours).compare_to(before.filter_traces(ours), "filename")
    )
    assert growth < 8 * 1024, growth  # a few cached (class, method) kinds at most, not per query


def test_100_concurrent_aqueries_make_100_separate_traces(
    bridge: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """asyncio.gather of 100 aquery calls yields 100 traces, each one correctly parented tree."""
    engine = traced(make_engine(), bridge, metrics)

    async def main() -> None:
        await asyncio.gather(*(engine.aquery(f"refunds for class {i}?") for i in range(100)))

    asyncio.run(main())
    by_trace: dict[int, list[ReadableSpan]] = {}
    for span in bridge.spans:
        by_trace.setdefault(span.context.trace_id, []).append(span)
    assert len(by_trace) == 100
    for spans in by_trace.values():
        assert_one_tree(tuple(spans))
        assert len(spans) == len(by_trace[next(iter(by_trace))])
    assert metrics.value("ragprod_query_requests_total", engine="docs", outcome="success") == 100


class _ThreadedPostprocessor(BaseNodePostprocessor):
    """Opens a span of its own; async LlamaIndex runs it in a worker thread (to_thread)."""

    provider: Any = None

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        import threading

        tracer = self.provider.get_tracer("test")
        with tracer.start_as_current_span("worker") as span:
            span.set_attribute("thread", threading.current_thread().name)
        return nodes


def test_context_reaches_llamaindex_worker_threads(
    bridge: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """A span opened in the thread LlamaIndex uses for a postprocessor joins the query's trace."""
    post = _ThreadedPostprocessor(provider=bridge.provider)
    engine = traced(make_engine(node_postprocessors=[post]), bridge, metrics)
    asyncio.run(engine.aquery("refunds?"))
    (worker,) = bridge.named("worker")
    (postprocess,) = bridge.named("postprocess _ThreadedPostprocessor")
    assert worker.attributes is not None
    assert worker.attributes["thread"] != "MainThread"
    assert worker.parent is not None
    assert worker.parent.span_id == postprocess.context.span_id
    assert_one_tree(bridge.spans)


def test_unsampled_queries_create_no_child_spans(metrics: RagMetrics, make_engine: Any) -> None:
    """Under ALWAYS_OFF the bridge opens no spans at all, yet tokens are still counted."""
    with capture_spans(sampler=ALWAYS_OFF) as spans:
        instrument(spans.provider, metrics=metrics)
        engine = traced(make_engine(), spans, metrics)
        engine.query("refunds?")
        handler = installed()
        assert handler is not None
        assert handler.open_count == 0
        assert spans.spans == ()
    tokens = metrics.value(
        "ragprod_llm_tokens_total", model="ragprod-extractive", direction="input"
    )
    assert tokens is not None
    assert tokens > 0


def test_top_k_100_drops_nothing(spans: SpanCapture, metrics: RagMetrics, make_engine: Any) -> None:
    """At top_k=100 with content capture, ids, scores, texts and the query all survive."""
    instrument(spans.provider, capture_content=True, metrics=metrics)
    engine = traced(make_engine(top_k=100), spans, metrics, capture_content=True)
    engine.query("refunds for order class 3")
    for span in spans.spans:
        assert span.dropped_attributes == 0, span.name
    (root,) = spans.named("query docs")
    (retrieve,) = spans.named("retrieve VectorIndexRetriever")
    for span in (root, retrieve):
        attributes = span.attributes
        assert attributes is not None
        assert attributes["ragprod.query.text"] == "refunds for order class 3"
        assert attributes["ragprod.retrieval.node_count"] == 100
        assert len(attributes["ragprod.retrieval.node_ids"]) == 100  # type: ignore[arg-type]
        scores = list(attributes["ragprod.retrieval.scores"])  # type: ignore[arg-type]
        assert scores == sorted(scores, reverse=True)
    assert retrieve.attributes is not None
    assert len(retrieve.attributes["ragprod.retrieval.documents"]) == 100  # type: ignore[arg-type]


def test_pii_canary_reaches_no_span_metric_or_log(
    bridge: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """By default a PII canary in the query is in no span attribute, metric label or log line."""
    out = io.StringIO()
    configure_logging(stream=out)
    engine = traced(make_engine(), bridge, metrics)
    engine.query(f"refunds for {CANARY}?")
    asyncio.run(engine.aquery(f"refunds for {CANARY}?"))
    assert len(bridge.spans) > 10
    for span in bridge.spans:
        assert CANARY not in str(dict(span.attributes or {})), span.name
        assert CANARY not in span.name
        for event in span.events:
            assert CANARY not in str(dict(event.attributes or {}))
    assert CANARY not in generate_latest(metrics.registry).decode()
    logged = out.getvalue()
    assert logged.count("ragprod.query.completed") == 2
    assert CANARY not in logged


def test_failing_llm_marks_its_span_and_the_query_error(
    bridge: SpanCapture, metrics: RagMetrics, index: Any
) -> None:
    """An LLM that raises: its span and the query span are ERROR; nothing stays attached."""

    class BrokenLLM(ExtractiveLLM):
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            raise TimeoutError("llm timed out")

    engine = traced(index.as_query_engine(llm=BrokenLLM()), bridge, metrics)
    with pytest.raises(TimeoutError):
        engine.query("refunds?")
    assert not trace.get_current_span().get_span_context().is_valid
    handler = installed()
    assert handler is not None
    assert handler.open_count == 0
    (llm,) = bridge.named("text_completion ragprod-extractive")
    assert llm.status.status_code == StatusCode.ERROR
    (root,) = bridge.named("query docs")
    assert root.status.status_code == StatusCode.ERROR
    assert_one_tree(bridge.spans)


def test_price_table_counts_estimated_cost(
    spans: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """With a price table, LLM tokens add up to an estimated cost per model."""
    instrument(spans.provider, metrics=metrics, prices={"ragprod-extractive": (1.0, 2.0)})
    engine = traced(make_engine(), spans, metrics)
    engine.query("refunds?")
    tokens_in = metrics.value(
        "ragprod_llm_tokens_total", model="ragprod-extractive", direction="input"
    )
    tokens_out = metrics.value(
        "ragprod_llm_tokens_total", model="ragprod-extractive", direction="output"
    )
    assert tokens_in
    assert tokens_out
    cost = metrics.value("ragprod_llm_cost_usd_total", model="ragprod-extractive")
    assert cost == pytest.approx((tokens_in * 1.0 + tokens_out * 2.0) / 1e6)


def test_lost_context_falls_back_to_llamaindex_parent_id(
    spans: SpanCapture, make_engine: Any, index: Any
) -> None:
    """A span entered in a thread without the OTel context still gets its dispatcher parent."""
    import inspect
    import threading

    from ragprod.tracing._bridge import SpanBridge
    from ragprod.tracing._query import get_tracer

    bridge = SpanBridge(
        get_tracer(spans.provider),
        capture_content=False,
        max_attribute_chars=64,
        scrubber=None,
        metrics=None,
    )
    args = inspect.signature(lambda q: None).bind("q")
    engine, retriever = make_engine(), index.as_retriever()
    bridge.span_enter("RetrieverQueryEngine.query-1", args, engine, None)

    def worker() -> None:
        bridge.span_enter(
            "VectorIndexRetriever.retrieve-2", args, retriever, "RetrieverQueryEngine.query-1"
        )
        bridge.span_exit("VectorIndexRetriever.retrieve-2", retriever, [])

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    bridge.span_exit("RetrieverQueryEngine.query-1", engine, None)
    child, parent = spans.spans
    assert child.parent is not None
    assert child.parent.span_id == parent.context.span_id
    assert bridge.open_count == 0


def test_tokenizer_counts_when_the_llm_reports_no_usage(
    spans: SpanCapture, metrics: RagMetrics, index: Any
) -> None:
    """An LLM without usage data is counted with the configured tokenizer."""
    from llama_index.core.base.llms.types import CompletionResponse
    from llama_index.core.llms.callbacks import llm_completion_callback

    class QuietLLM(ExtractiveLLM):
        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            return CompletionResponse(text="five days")

    instrument(spans.provider, metrics=metrics, tokenizer=str.split)
    engine = traced(index.as_query_engine(llm=QuietLLM()), spans, metrics)
    engine.query("refunds?")
    out = metrics.value("ragprod_llm_tokens_total", model="ragprod-extractive", direction="output")
    assert out == 2
    (root,) = spans.named("query docs")
    assert root.attributes is not None
    assert root.attributes["gen_ai.usage.output_tokens"] == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streamed_query_is_one_complete_trace(
    mode: str, bridge: SpanCapture, metrics: RagMetrics, make_engine: Any
) -> None:
    """A streaming query through the real pipeline ends as one trace with every step in it."""
    engine = traced(make_engine(streaming=True), bridge, metrics)
    if mode == "sync":
        response = engine.query("how long do refunds take?")
        text = "".join(response.response_gen)
    else:

        async def main() -> str:
            response = await engine.aquery("how long do refunds take?")
            return "".join([piece async for piece in response.async_response_gen()])

        text = asyncio.run(main())
    assert text
    spans = bridge.spans
    assert_one_tree(spans)
    names = {s.name for s in spans}
    assert "retrieve VectorIndexRetriever" in names
    assert any(n.startswith(("text_completion", "chat")) for n in names)
    (root,) = bridge.named("query docs")
    assert root.attributes is not None
    assert "ragprod.stream.time_to_first_token_s" in root.attributes
    assert root.end_time == max(s.end_time or 0 for s in spans)
    tokens = metrics.value(
        "ragprod_llm_tokens_total", model="ragprod-extractive", direction="output"
    )
    assert tokens is not None
    assert tokens > 0


def test_attribute_limit_never_evicts_important_attributes(metrics: RagMetrics) -> None:
    """Under a tight OTel attribute limit ragprod stops setting and counts the refused ones."""
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(span_limits=SpanLimits(max_span_attributes=6))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    from ragprod.testing import FaultyQueryEngine

    engine = TracedQueryEngine(
        FaultyQueryEngine(answer="ok"),
        tracer_provider=provider,
        metrics=metrics,
        name="docs",
        capture_content=True,
    )
    engine.query("the query text")
    (span,) = exporter.get_finished_spans()
    attributes = span.attributes
    assert attributes is not None
    assert span.dropped_attributes == 0
    assert attributes["ragprod.engine"] == "docs"
    assert attributes["ragprod.query.text"] == "the query text"
    assert attributes["ragprod.outcome"] == "success"
    dropped = attributes["ragprod.attributes.dropped"]
    assert isinstance(dropped, int)
    assert dropped > 0


def test_llm_span_names_follow_each_instance_model(bridge: SpanCapture) -> None:
    """Two LLMs of one class with different models get spans named after their own model."""
    for model in ("model-a", "model-b"):
        ExtractiveLLM(model_name=model).complete("Query: refunds?\nAnswer:")
    names = bridge.names()
    assert "text_completion model-a" in names
    assert "text_completion model-b" in names
