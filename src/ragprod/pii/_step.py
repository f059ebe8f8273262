"""The PII query step: pseudonymize the query on the way down, restore the answer on the way up."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.schema import NodeWithScore, QueryBundle

from ragprod._pipeline import AsyncNext, SyncNext
from ragprod.metrics import RagMetrics
from ragprod.pii._anonymizer import PIIAnonymizer
from ragprod.pii._pseudonym import StreamRestorer

__all__ = ["PIIStep", "make_step"]


class PIIStep:
    """The ``QueryStep`` behind :class:`PIIQueryEngine` and ``harden(pii=...)``.

    On the way down it pseudonymizes the query (and any custom embedding
    strings), so neither a cache key, nor the retriever, nor the LLM sees raw
    PII. On the way back, with ``restore=True``, it puts the originals back
    into the answer text and the source nodes' text and string metadata, using
    the request's own mapping first and the anonymizer's vault for pseudonyms
    that came from anonymized documents. The response's ``metadata`` (where
    LlamaIndex copies the source nodes' metadata) is restored into new dicts,
    so a cache that holds the response keeps only pseudonyms. Streamed answers
    are restored chunk by chunk; a pseudonym split across chunks is held back
    until it is complete.

    Args:
        anonymizer: the :class:`PIIAnonymizer` to use.
        restore: put original values back into the answer.
        name: the step's name in the engine's ``repr``.
    """

    def __init__(
        self, anonymizer: PIIAnonymizer, *, restore: bool = True, name: str = "pii"
    ) -> None:
        self.anonymizer = anonymizer
        self.restore = restore
        self.name = name

    def prepare(self, query: QueryBundle) -> tuple[QueryBundle, dict[str, str]]:
        """The pseudonymized query and the mapping needed to restore its pseudonyms."""
        result = self.anonymizer.anonymize(query.query_str)
        mapping = dict(result.mapping)
        changes: dict[str, object] = {}
        if result.entities:
            changes["query_str"] = result.text
        if query.custom_embedding_strs:
            strs = []
            for s in query.custom_embedding_strs:
                extra = self.anonymizer.anonymize(s)
                mapping.update(extra.mapping)
                strs.append(extra.text)
            if strs != list(query.custom_embedding_strs):
                changes["custom_embedding_strs"] = strs
        if not changes:
            return query, mapping
        return dataclasses.replace(query, **changes), mapping  # type: ignore[arg-type]

    def finish(self, response: RESPONSE_TYPE, mapping: Mapping[str, str]) -> RESPONSE_TYPE:
        """Restore pseudonyms in ``response`` (in place; streams are wrapped)."""
        if not self.restore:
            return response
        deanonymize = self.anonymizer.restore_function(mapping)
        if isinstance(response, Response):
            if response.response is not None:
                response.response = deanonymize(response.response)
        elif isinstance(response, StreamingResponse):
            if response.response_txt is not None:
                response.response_txt = deanonymize(response.response_txt)
            if response.response_gen is not None:
                response.response_gen = _restore_stream(
                    response.response_gen, self.anonymizer.restorer(mapping)
                )
        elif isinstance(response, AsyncStreamingResponse):
            if response.response_txt is not None:
                response.response_txt = deanonymize(response.response_txt)
            if response.response_gen is not None:
                response.response_gen = _arestore_stream(
                    response.response_gen, self.anonymizer.restorer(mapping)
                )
        sources = getattr(response, "source_nodes", None)
        if sources:
            response.source_nodes = [self._restore_node(n, deanonymize) for n in sources]
        metadata = getattr(response, "metadata", None)
        if metadata:
            # LlamaIndex copies the source nodes' metadata here (node id -> dict).
            # New containers, never in place: a cache may hold the inner dicts.
            response.metadata = _restore_tree(metadata, deanonymize)
        return response

    @staticmethod
    def _restore_node(item: NodeWithScore, deanonymize: Callable[[str], str]) -> NodeWithScore:
        node = item.node
        text = node.get_content()
        restored = deanonymize(text)
        metadata = _restore_tree(node.metadata, deanonymize)
        if restored == text and metadata == node.metadata:
            return item
        copy = node.model_copy()
        copy.set_content(restored)
        copy.metadata = metadata
        return NodeWithScore(node=copy, score=item.score)

    def handle(self, query: QueryBundle, call_next: SyncNext) -> RESPONSE_TYPE:
        """Pseudonymize ``query``, run the chain, restore the answer."""
        pseudonymized, mapping = self.prepare(query)
        return self.finish(call_next(pseudonymized), mapping)

    async def ahandle(self, query: QueryBundle, call_next: AsyncNext) -> RESPONSE_TYPE:
        """Pseudonymize ``query``, run the chain in the event loop, restore the answer."""
        pseudonymized, mapping = self.prepare(query)
        return self.finish(await call_next(pseudonymized), mapping)

    def __repr__(self) -> str:
        return f"PIIStep(restore={self.restore}, anonymizer={self.anonymizer!r})"


def _restore_tree(value: Any, deanonymize: Callable[[str], str]) -> Any:
    """``value`` with pseudonyms restored in every string, as new dicts and lists."""
    if isinstance(value, str):
        return deanonymize(value)
    if isinstance(value, dict):
        return {key: _restore_tree(item, deanonymize) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_restore_tree(item, deanonymize) for item in value)
    return value


def _restore_stream(
    chunks: Generator[str, None, None], restorer: StreamRestorer
) -> Generator[str, None, None]:
    for chunk in chunks:
        out = restorer.feed(chunk)
        if out:
            yield out
    rest = restorer.flush()
    if rest:
        yield rest


async def _arestore_stream(
    chunks: AsyncGenerator[str, None], restorer: StreamRestorer
) -> AsyncGenerator[str, None]:
    async for chunk in chunks:
        out = restorer.feed(chunk)
        if out:
            yield out
    rest = restorer.flush()
    if rest:
        yield rest


def make_step(
    config: PIIAnonymizer | PIIStep | bool,
    *,
    engine: BaseQueryEngine,
    metrics: RagMetrics,
    name: str = "pii",
) -> PIIStep:
    """The PII step for ``harden(pii=...)``: ``True`` means ``PIIAnonymizer()`` defaults.

    Args:
        config: ``True``, a :class:`PIIAnonymizer`, or a ready :class:`PIIStep`.
        engine: the engine being hardened (unused: the step needs nothing from it).
        metrics: where the anonymizer counts entities.
        name: the hardened engine's name (the step itself is always named ``"pii"``).

    Raises:
        TypeError: ``config`` is none of the above.
    """
    del engine, name
    if isinstance(config, PIIStep):
        config.anonymizer.bind_metrics(metrics)
        return config
    if config is True:
        return PIIStep(PIIAnonymizer(metrics=metrics))
    if not isinstance(config, PIIAnonymizer):
        raise TypeError(f"pii= takes a PIIAnonymizer or True, got {type(config).__name__}")
    config.bind_metrics(metrics)
    return PIIStep(config)
