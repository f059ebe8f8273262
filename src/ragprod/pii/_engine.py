"""``PIIQueryEngine``: a query engine that never lets raw PII past it."""

from __future__ import annotations

from collections.abc import Sequence

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle

from ragprod._pipeline import StepQueryEngine
from ragprod.metrics import RagMetrics
from ragprod.pii._anonymizer import PIIAnonymizer
from ragprod.pii._step import PIIStep

__all__ = ["PIIQueryEngine"]


class PIIQueryEngine(StepQueryEngine):
    """Wraps a query engine: pseudonymize the query, restore pseudonyms in the answer.

    The wrapped engine (its retriever, cache, LLM, tracing below this layer)
    only ever sees pseudonyms such as ``PERSON_3f9a2c1b7d0e``; the caller gets
    the answer back with the original values, streaming answers included.

    Args:
        engine: any LlamaIndex query engine.
        anonymizer: the :class:`PIIAnonymizer` (default: ``PIIAnonymizer()``).
        restore: put the original values back into the answer and its sources.
        metrics: counts ``ragprod_pii_entities_total{type}``.
        callback_manager: defaults to the wrapped engine's.

    Example:
        >>> from ragprod.testing import FaultyQueryEngine
        >>> inner = FaultyQueryEngine(answer=lambda q: f"echo: {q}")
        >>> engine = PIIQueryEngine(inner, PIIAnonymizer(key=b"k" * 32))
        >>> str(engine.query("refund for ana@example.org"))
        'echo: refund for ana@example.org'
        >>> inner.queries[-1].startswith("refund for email_")
        True
    """

    def __init__(
        self,
        engine: BaseQueryEngine,
        anonymizer: PIIAnonymizer | None = None,
        *,
        restore: bool = True,
        metrics: RagMetrics | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        anonymizer = anonymizer if anonymizer is not None else PIIAnonymizer(metrics=metrics)
        if metrics is not None:
            anonymizer.bind_metrics(metrics)
        self._pii_step = PIIStep(anonymizer, restore=restore)
        super().__init__(engine, [self._pii_step], callback_manager=callback_manager)

    @property
    def anonymizer(self) -> PIIAnonymizer:
        """The anonymizer this engine uses."""
        return self._pii_step.anonymizer

    # The shell forwards these to the wrapped engine; pseudonymize here as well, so the
    # lower-level entry points do not bypass the layer.
    def retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        """The wrapped engine's ``retrieve`` with the query pseudonymized."""
        pseudonymized, _ = self._pii_step.prepare(query_bundle)
        return self.engine.retrieve(pseudonymized)

    def synthesize(
        self,
        query_bundle: QueryBundle,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
    ) -> RESPONSE_TYPE:
        """The wrapped engine's ``synthesize``: query pseudonymized, answer restored."""
        pseudonymized, mapping = self._pii_step.prepare(query_bundle)
        response = self.engine.synthesize(pseudonymized, nodes, additional_source_nodes)
        return self._pii_step.finish(response, mapping)

    async def asynthesize(
        self,
        query_bundle: QueryBundle,
        nodes: list[NodeWithScore],
        additional_source_nodes: Sequence[NodeWithScore] | None = None,
    ) -> RESPONSE_TYPE:
        """The wrapped engine's ``asynthesize``: query pseudonymized, answer restored."""
        pseudonymized, mapping = self._pii_step.prepare(query_bundle)
        response = await self.engine.asynthesize(pseudonymized, nodes, additional_source_nodes)
        return self._pii_step.finish(response, mapping)
