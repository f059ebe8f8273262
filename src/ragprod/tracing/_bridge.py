"""The span and event handlers ``instrument()`` adds to LlamaIndex's root dispatcher."""

from __future__ import annotations

import contextlib
import inspect
import time
from collections.abc import Callable, Mapping, Sized
from typing import Any

from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import LLMChatEndEvent, LLMCompletionEndEvent
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler
from llama_index.core.schema import NodeWithScore
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span
from pydantic import PrivateAttr

from ragprod._pipeline import StepQueryEngine
from ragprod.metrics._rag import QueryMetrics
from ragprod.tracing._attrs import AttributeBudget, clip, node_attributes, record_error
from ragprod.tracing._context import current_query
from ragprod.tracing._kinds import SKIP, Kind, classify, llm_input, model_name, query_text, usage
from ragprod.tracing._query import TracingStep

__all__ = ["OTelSpanHandler", "SpanBridge", "TokenEventHandler"]


def _detach(token: Any) -> None:
    var = getattr(token, "var", None)
    if var is None:
        otel_context.detach(token)
        return
    # Exited in another context (a Future's done-callback): that context is a
    # copy that dies with the callback, so there is nothing to restore.
    with contextlib.suppress(ValueError):
        var.reset(token)


class _Open:
    __slots__ = ("kind", "model", "span", "start", "token")

    def __init__(self, span: Span, token: Any, kind: Kind, model: str | None) -> None:
        self.span = span
        self.token = token
        self.kind = kind
        self.model = model
        self.start = time.perf_counter()


class SpanBridge:
    """Turns LlamaIndex dispatcher spans into OpenTelemetry spans.

    Each span is made current while LlamaIndex runs inside it, so nesting,
    threads and tasks (which copy the context) parent correctly. It keeps only
    the spans that are open; nothing is kept after a span ends. Spans whose
    parent is an unsampled span are not created at all (parent-based sampling,
    the SDK default), so unsampled queries cost almost nothing here.
    """

    __slots__ = (
        "_all_spans",
        "_capture",
        "_kinds",
        "_limit",
        "_metrics",
        "_prices",
        "_scrub",
        "_spans",
        "_tokenizer",
        "_tracer",
        "llm_calls",
    )

    def __init__(
        self,
        tracer: trace.Tracer,
        *,
        capture_content: bool,
        max_attribute_chars: int,
        scrubber: Callable[[str], str] | None,
        metrics: QueryMetrics | None,
        prices: Mapping[str, tuple[float, float]] | None = None,
        all_spans: bool = False,
        tokenizer: Callable[[str], Sized] | None = None,
    ) -> None:
        self._tracer = tracer
        self._capture = capture_content
        self._limit = max_attribute_chars
        self._scrub = scrubber
        self._metrics = metrics
        self._prices = prices
        self._tokenizer = tokenizer
        self._all_spans = all_spans
        self._kinds: dict[tuple[type, str], Kind] = {}
        self._spans: dict[str, _Open] = {}
        #: Open LLM calls (sampled or not) -> (nested in another LLM call?, model).
        #: Nested: ``CustomLLM.acomplete`` calls ``complete``; one call, counted once.
        self.llm_calls: dict[str, tuple[bool, str]] = {}

    @property
    def open_count(self) -> int:
        """How many spans are open right now (0 between queries)."""
        return len(self._spans)

    def _kind(self, instance: Any, id_: str) -> Kind:
        qualname = id_.partition("-")[0]
        key = (type(instance), qualname)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = classify(instance, qualname, self._all_spans)
        return kind

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None,
        parent_id: str | None,
    ) -> None:
        """Open an OTel span for the dispatcher span ``id_`` and make it current."""
        kind = self._kind(instance, id_)
        if kind is SKIP:
            return
        model = None
        if kind.role == "llm":
            nested = parent_id is not None and parent_id in self.llm_calls
            model = model_name(instance)
            self.llm_calls[id_] = (nested, model)
            record = current_query()
            if record is not None:
                record.model = model
            if nested:
                return
        if (
            kind.role == "query"
            and isinstance(instance, StepQueryEngine)
            and any(isinstance(step, TracingStep) for step in instance.steps)
        ):
            return  # the tracing step's own span stands for this shell
        current = trace.get_current_span().get_span_context()
        parent: otel_context.Context | None = None
        if current.is_valid:
            if not current.trace_flags.sampled:
                return  # parent-based sampling: nothing below records
        elif parent_id is not None:
            # Context lost (a raw thread): fall back to LlamaIndex's own parent id.
            entry = self._spans.get(parent_id)
            if entry is not None:
                parent = trace.set_span_in_context(entry.span)
        name = kind.name
        if kind.role == "llm" or kind.role == "embedding":
            name = f"{name} {model or model_name(instance)}"
        if current.is_valid:
            # Under a sampled parent a parent-based sampler records this span too:
            # hand the attributes over at creation (one allocation, no locks).
            attributes = self._start_attributes(kind, instance, bound_args)
            span = self._tracer.start_span(
                name, context=parent, kind=kind.kind, attributes=attributes
            )
        else:
            span = self._tracer.start_span(name, context=parent, kind=kind.kind)
            if span.is_recording():
                span.set_attributes(self._start_attributes(kind, instance, bound_args) or {})
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        self._spans[id_] = _Open(span, token, kind, model)

    def _start_attributes(
        self, kind: Kind, instance: Any, bound_args: inspect.BoundArguments
    ) -> dict[str, Any] | None:
        if kind.operation is None:
            return None
        if kind.role in ("llm", "embedding"):
            attributes: dict[str, Any] = {
                "gen_ai.operation.name": kind.operation,
                "gen_ai.request.model": model_name(instance),
            }
            if self._capture and kind.role == "llm":
                text = llm_input(bound_args)
                if text is not None:
                    attributes["gen_ai.input.messages"] = clip(text, self._limit, self._scrub)
            return attributes
        attributes = {"ragprod.operation": kind.operation}
        if kind.role == "retrieve":
            top_k = getattr(instance, "_similarity_top_k", None) or getattr(
                instance, "similarity_top_k", None
            )
            if isinstance(top_k, int):
                attributes["ragprod.retrieval.top_k"] = top_k
        if self._capture and kind.role in ("retrieve", "query"):
            text = query_text(bound_args)
            if text is not None:
                attributes["ragprod.query.text"] = clip(text, self._limit, self._scrub)
        return attributes

    def span_exit(self, id_: str, instance: Any | None, result: Any | None) -> None:
        """End the OTel span of ``id_`` and restore the context around it."""
        if self.llm_calls:
            self.llm_calls.pop(id_, None)
        entry = self._spans.pop(id_, None)
        if entry is None:
            return
        _detach(entry.token)
        kind = entry.kind
        metrics = self._metrics
        if metrics is not None:
            elapsed = time.perf_counter() - entry.start
            if kind.role == "retrieve":
                metrics.retrieval_duration.labels(retriever=type(instance).__name__).observe(
                    elapsed
                )
            elif kind.role == "llm" and kind.operation is not None:
                metrics.llm_duration.labels(
                    model=entry.model or "unknown", operation=kind.operation
                ).observe(elapsed)
        span = entry.span
        if span.is_recording() and kind.role in ("retrieve", "postprocess", "llm"):
            self._annotate_result(span, kind, result)
        span.end()

    def _annotate_result(self, span: Span, kind: Kind, result: Any) -> None:
        budget = AttributeBudget(span)
        if kind.role == "llm":
            text = getattr(result, "text", None)
            if text is None:
                message = getattr(result, "message", None)
                text = getattr(message, "content", None)
            if self._capture and isinstance(text, str):
                budget.set("gen_ai.output.messages", clip(text, self._limit, self._scrub))
        elif isinstance(result, list) and all(isinstance(n, NodeWithScore) for n in result):
            node_attributes(
                budget,
                "ragprod.retrieval",
                result,
                capture_content=self._capture,
                limit=self._limit,
                scrub=self._scrub,
            )
        budget.close()

    def span_drop(self, id_: str, err: BaseException | None) -> None:
        """End the OTel span of ``id_`` with status ERROR."""
        if self.llm_calls:
            self.llm_calls.pop(id_, None)
        entry = self._spans.pop(id_, None)
        if entry is None:
            return
        _detach(entry.token)
        if err is not None:
            record_error(entry.span, err, self._scrub)
        entry.span.end()

    def set_usage(self, span_id: str | None, tokens_in: int | None, tokens_out: int | None) -> None:
        """Put token usage on the open LLM span ``span_id``, if it records."""
        entry = self._spans.get(span_id) if span_id else None
        if entry is not None and entry.span.is_recording():
            if tokens_in is not None:
                entry.span.set_attribute("gen_ai.usage.input_tokens", tokens_in)
            if tokens_out is not None:
                entry.span.set_attribute("gen_ai.usage.output_tokens", tokens_out)

    def close(self) -> None:
        """End every span still open (at uninstrument or dispatcher shutdown)."""
        self.llm_calls.clear()
        while self._spans:
            _, entry = self._spans.popitem()
            if entry.span.is_recording():
                entry.span.set_attribute("ragprod.span.abandoned", True)
            entry.span.end()

    def handle_event(self, event: BaseEvent) -> None:
        """Count the tokens of an LLM end event (streaming calls included)."""
        if type(event) not in (LLMChatEndEvent, LLMCompletionEndEvent):
            return
        response = getattr(event, "response", None)
        if response is None:
            return
        span_id = event.span_id
        call = self.llm_calls.get(span_id) if span_id is not None else None
        if call is not None and call[0]:
            return  # nested: the outer call reports the same tokens
        tokens_in, tokens_out = usage(response)
        if tokens_in is None and tokens_out is None:
            if self._tokenizer is None:
                return
            tokens_in, tokens_out = self._count(event, response)
        model = call[1] if call is not None else "unknown"
        self.set_usage(span_id, tokens_in, tokens_out)
        record = current_query()
        if model == "unknown" and record is not None and record.model is not None:
            model = record.model  # a stream's end event comes after its span closed
        if model == "unknown":
            raw = getattr(response, "raw", None)
            if isinstance(raw, Mapping) and isinstance(raw.get("model"), str):
                model = str(raw["model"])
        if record is not None:
            record.add_tokens(tokens_in, tokens_out)
        if self._metrics is not None:
            self._metrics.count_tokens(model, tokens_in, tokens_out, self._prices)

    def _count(self, event: BaseEvent, response: Any) -> tuple[int | None, int | None]:
        """Count tokens with the configured tokenizer (the LLM reported none)."""
        assert self._tokenizer is not None
        prompt = getattr(event, "prompt", None)
        if prompt is None:
            messages = getattr(event, "messages", None) or ()
            prompt = "\n".join(str(m.content or "") for m in messages)
        text = getattr(response, "text", None)
        if text is None:
            message = getattr(response, "message", None)
            text = getattr(message, "content", None)
        return len(self._tokenizer(str(prompt))), len(self._tokenizer(str(text or "")))


def _core(handler: Any) -> SpanBridge:
    # Pydantic routes private-attribute reads through a slow ``__getattr__``;
    # read the private dict directly (this runs for every dispatcher span).
    bridge: SpanBridge = handler.__pydantic_private__["_bridge"]
    return bridge


class OTelSpanHandler(BaseSpanHandler[Any]):
    """The LlamaIndex span handler ``instrument()`` installs; see :class:`SpanBridge`."""

    _bridge: SpanBridge = PrivateAttr()

    def __init__(self, bridge: SpanBridge) -> None:
        super().__init__()
        self._bridge = bridge

    @classmethod
    def class_name(cls) -> str:
        return "RagprodOTelSpanHandler"

    def span_enter(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        parent_id: str | None = None,
        tags: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Open an OTel span for the dispatcher span ``id_``."""
        _core(self).span_enter(id_, bound_args, instance, parent_id)

    def span_exit(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        result: Any | None = None,
        **kwargs: Any,
    ) -> None:
        """End the OTel span of ``id_``."""
        _core(self).span_exit(id_, instance, result)

    def span_drop(
        self,
        id_: str,
        bound_args: inspect.BoundArguments,
        instance: Any | None = None,
        err: BaseException | None = None,
        **kwargs: Any,
    ) -> None:
        """End the OTel span of ``id_`` with status ERROR."""
        _core(self).span_drop(id_, err)

    def close(self) -> None:
        """End every span still open."""
        _core(self).close()

    # The abstract hooks of BaseSpanHandler: unused, span_enter/exit/drop are overridden.
    def new_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
        return None

    def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
        return None


class TokenEventHandler(BaseEventHandler):
    """The LlamaIndex event handler ``instrument()`` installs: LLM token counts."""

    _bridge: SpanBridge = PrivateAttr()

    def __init__(self, bridge: SpanBridge) -> None:
        super().__init__()
        self._bridge = bridge

    @classmethod
    def class_name(cls) -> str:
        return "RagprodTokenEventHandler"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        """Count the tokens of an LLM end event."""
        if type(event) in (LLMChatEndEvent, LLMCompletionEndEvent):
            _core(self).handle_event(event)
