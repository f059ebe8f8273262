"""``TracedRetriever``: a span and a latency histogram around any retriever."""

from __future__ import annotations

import abc
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, TracerProvider

from ragprod.metrics import RagMetrics
from ragprod.metrics._rag import QueryMetrics
from ragprod.tracing._attrs import AttributeBudget, clip, node_attributes, record_error
from ragprod.tracing._config import Tracing
from ragprod.tracing._query import get_tracer

__all__ = ["TracedRetriever"]


class _RetrievalScope:
    """One retrieval's span and timer: the logic the sync and async paths share."""

    __slots__ = ("owner", "span", "start", "token")

    def __init__(self, owner: TracedRetriever, query: QueryBundle) -> None:
        self.owner = owner
        config = owner.tracing
        self.start = config.clock()
        span = owner._tracer.start_span(
            owner._span_name, kind=SpanKind.INTERNAL, attributes=owner._start_attributes
        )
        if span.is_recording() and config.capture_content:
            span.set_attribute(
                "ragprod.query.text",
                clip(query.query_str, config.max_attribute_chars, config.scrubber),
            )
        self.span = span
        self.token = otel_context.attach(trace.set_span_in_context(span))

    def done(self, nodes: list[NodeWithScore] | None, exc: BaseException | None) -> None:
        otel_context.detach(self.token)
        owner = self.owner
        config = owner.tracing
        owner._duration.observe(config.clock() - self.start)
        span = self.span
        if exc is not None:
            record_error(span, exc, config.scrubber)
        elif span.is_recording() and nodes is not None:
            budget = AttributeBudget(span)
            node_attributes(
                budget,
                "ragprod.retrieval",
                nodes,
                capture_content=config.capture_content,
                limit=config.max_attribute_chars,
                scrub=config.scrubber,
            )
            budget.close()
        span.end()


class TracedRetriever(BaseRetriever):
    """A retriever that records a ``retrieve <name>`` span around another one.

    The span carries ``ragprod.retrieval.top_k`` (when the inner retriever has
    one), the node count, node ids and scores (best first, as array
    attributes, so a large ``top_k`` never crowds other attributes out), and,
    with ``capture_content``, the query and node texts, scrubbed and
    truncated. Durations go to ``ragprod_retrieval_duration_seconds{retriever}``.
    Errors set status ERROR, record a scrubbed exception event and propagate
    unchanged. ``aretrieve`` awaits the inner ``aretrieve`` (it never blocks
    the event loop on a sync call).

    Args:
        retriever: any LlamaIndex ``BaseRetriever``.
        tracer_provider: where spans go; the global provider if ``None``.
        metrics: the Prometheus collectors (a private registry by default).
        capture_content: record query and node texts.
        max_attribute_chars: the longest captured text.
        name: the retriever's name in spans and metrics (default: its class name).

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from ragprod.testing import HashEmbedding
        >>> from ragprod.tracing import TracedRetriever
        >>> index = VectorStoreIndex.from_documents(
        ...     [Document(text="Refunds take 5 days.")], embed_model=HashEmbedding()
        ... )
        >>> retriever = TracedRetriever(index.as_retriever(similarity_top_k=1), name="docs")
        >>> [n.node.get_content() for n in retriever.retrieve("refunds")]
        ['Refunds take 5 days.']
    """

    _ragprod_traced = True

    def __init__(
        self,
        retriever: BaseRetriever,
        *,
        tracer_provider: TracerProvider | None = None,
        metrics: RagMetrics | None = None,
        capture_content: bool = False,
        max_attribute_chars: int = 1024,
        name: str | None = None,
    ) -> None:
        if not isinstance(retriever, BaseRetriever):
            raise TypeError(f"expected a llama_index BaseRetriever, got {type(retriever).__name__}")
        self._retriever = retriever
        self.tracing = Tracing(
            tracer_provider=tracer_provider,
            capture_content=capture_content,
            max_attribute_chars=max_attribute_chars,
        )
        self.metrics = metrics if metrics is not None else RagMetrics()
        self.name = name or type(retriever).__name__
        self._tracer = get_tracer(tracer_provider)
        self._span_name = f"retrieve {self.name}"
        self._duration = QueryMetrics.on(self.metrics).retrieval_duration.labels(
            retriever=self.name
        )
        attributes: dict[str, Any] = {"ragprod.operation": "retrieve"}
        top_k = getattr(retriever, "_similarity_top_k", None) or getattr(
            retriever, "similarity_top_k", None
        )
        if isinstance(top_k, int):
            attributes["ragprod.retrieval.top_k"] = top_k
        self._start_attributes = attributes
        super().__init__(
            callback_manager=retriever.callback_manager,
            verbose=getattr(retriever, "_verbose", False),
        )

    @property
    def retriever(self) -> BaseRetriever:
        """The wrapped retriever."""
        return self._retriever

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {"retriever": self._retriever}

    def _traced_retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        scope = _RetrievalScope(self, query_bundle)
        try:
            nodes = self._retriever.retrieve(query_bundle)
        except BaseException as exc:
            scope.done(None, exc)
            raise
        scope.done(nodes, None)
        return nodes

    async def _traced_aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        scope = _RetrievalScope(self, query_bundle)
        try:
            nodes = await self._retriever.aretrieve(query_bundle)
        except BaseException as exc:
            scope.done(None, exc)
            raise
        scope.done(nodes, None)
        return nodes

    def __repr__(self) -> str:
        return f"<TracedRetriever {self.name!r} -> {type(self._retriever).__name__}>"


# Assigned after the class body so LlamaIndex's DispatcherSpanMixin does not
# wrap them in a second dispatcher span (``retrieve`` already has one).
TracedRetriever._retrieve = TracedRetriever._traced_retrieve  # type: ignore[method-assign,assignment]
TracedRetriever._aretrieve = TracedRetriever._traced_aretrieve  # type: ignore[method-assign,assignment]
abc.update_abstractmethods(TracedRetriever)  # type: ignore[type-abstract]
