"""``instrument()`` / ``uninstrument()``: LlamaIndex's instrumentation, bridged into OTel."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sized
from typing import Any

from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from opentelemetry.trace import TracerProvider

from ragprod.metrics import RagMetrics
from ragprod.metrics._rag import QueryMetrics
from ragprod.tracing._bridge import OTelSpanHandler, SpanBridge, TokenEventHandler
from ragprod.tracing._query import get_tracer

__all__ = ["installed", "instrument", "uninstrument"]


class _Installed:
    __slots__ = ("bridge", "events", "key", "spans")

    def __init__(
        self,
        key: tuple[Any, ...],
        bridge: SpanBridge,
        spans: OTelSpanHandler,
        events: TokenEventHandler,
    ) -> None:
        self.key = key
        self.bridge = bridge
        self.spans = spans
        self.events = events


_lock = threading.Lock()
_state: _Installed | None = None


def installed() -> SpanBridge | None:
    """The active bridge, if ``instrument()`` is in effect."""
    state = _state
    return state.bridge if state is not None else None


def instrument(
    tracer_provider: TracerProvider | None = None,
    *,
    capture_content: bool = False,
    max_attribute_chars: int = 1024,
    scrubber: Callable[[str], str] | None = None,
    metrics: RagMetrics | None = None,
    prices: Mapping[str, tuple[float, float]] | None = None,
    all_spans: bool = False,
    tokenizer: Callable[[str], Sized] | None = None,
) -> None:
    """Bridge LlamaIndex's instrumentation into OpenTelemetry spans.

    After this call, the spans LlamaIndex's dispatcher opens (query engine,
    retriever, synthesizer, postprocessor, LLM and embedding calls) become
    OTel spans, children of whatever span is current, typically the
    ``TracedQueryEngine``'s query span. LLM and embedding spans follow the
    GenAI semantic conventions (``chat <model>``, ``text_completion <model>``,
    ``embeddings <model>``, kind CLIENT, ``gen_ai.operation.name``,
    ``gen_ai.request.model``, ``gen_ai.usage.input_tokens``/``output_tokens``);
    retrieval spans carry ``ragprod.retrieval.top_k``, node count, node ids and
    scores. By default only these pipeline steps become spans; LlamaIndex's
    many helper spans (text splitters, ``get_response``, ``predict``, private
    ``_retrieve``/``_query``) are folded into their step, which keeps traces
    readable and the cost per query low (``all_spans=True`` keeps them).

    Calling it again with the same arguments does nothing; with different
    arguments it replaces the previous bridge, so spans are never doubled.

    Args:
        tracer_provider: where spans go; the global provider if ``None``.
        capture_content: record prompts, completions, query and node texts.
        max_attribute_chars: the longest captured text.
        scrubber: applied to captured text (``ragprod.logging.scrub_text`` by
            default).
        metrics: count ``ragprod_llm_*`` tokens and durations and
            ``ragprod_retrieval_duration_seconds`` here (no metrics if ``None``).
        prices: model -> (USD per 1M input tokens, per 1M output tokens).
        all_spans: also turn LlamaIndex's helper spans into OTel spans.
        tokenizer: counts tokens (``len(tokenizer(text))``) of LLM calls whose
            response reports no usage, for example
            ``tiktoken.get_encoding("cl100k_base").encode``; without it such
            calls are not counted.

    Example:
        >>> from ragprod.tracing import instrument, uninstrument
        >>> instrument()
        >>> uninstrument()
    """
    global _state
    if scrubber is None:
        from ragprod.logging._processors import scrub_text

        scrubber = scrub_text
    key = (
        tracer_provider,
        capture_content,
        max_attribute_chars,
        scrubber,
        metrics,
        prices,
        all_spans,
        tokenizer,
    )
    with _lock:
        if _state is not None:
            if _state.key == key:
                return
            _uninstall(_state)
            _state = None
        query_metrics = QueryMetrics.on(metrics) if metrics is not None else None
        bridge = SpanBridge(
            get_tracer(tracer_provider),
            capture_content=capture_content,
            max_attribute_chars=max_attribute_chars,
            scrubber=scrubber,
            metrics=query_metrics,
            prices=prices,
            all_spans=all_spans,
            tokenizer=tokenizer,
        )
        spans, events = OTelSpanHandler(bridge), TokenEventHandler(bridge)
        root = get_dispatcher()
        root.add_span_handler(spans)
        root.add_event_handler(events)
        _state = _Installed(key, bridge, spans, events)


def _uninstall(state: _Installed) -> None:
    root = get_dispatcher()
    root.span_handlers = [h for h in root.span_handlers if h is not state.spans]
    root.event_handlers = [h for h in root.event_handlers if h is not state.events]
    state.bridge.close()


def uninstrument() -> None:
    """Remove the bridge: every handler ``instrument()`` added is gone afterwards.

    Spans still open are ended (marked ``ragprod.span.abandoned``). Safe to
    call when not instrumented.
    """
    global _state
    with _lock:
        if _state is not None:
            _uninstall(_state)
            _state = None
