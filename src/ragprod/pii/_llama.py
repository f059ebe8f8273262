"""LlamaIndex components: ``PIINodePostprocessor`` and ``PIITransform``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import (
    BaseNode,
    NodeWithScore,
    QueryBundle,
    TransformComponent,
)

from ragprod.pii._anonymizer import PIIAnonymizer

__all__ = ["PIINodePostprocessor", "PIITransform"]


class PIINodePostprocessor(BaseNodePostprocessor):
    """Anonymizes retrieved nodes before they reach the LLM.

    Each node's text and string metadata values are anonymized with the given
    anonymizer (pseudonyms by default, so a :class:`PIIQueryEngine` sharing the
    anonymizer restores them in the answer). Metadata matters: LlamaIndex puts
    it into the LLM prompt unless excluded, and caches store it. Nodes are
    copied, never changed in place: the docstore keeps the original. One
    anonymizer serves every request; nothing is built per node.

    Args:
        anonymizer: the :class:`PIIAnonymizer` (default: ``PIIAnonymizer()``).

    Example:
        >>> from llama_index.core.schema import TextNode
        >>> pp = PIINodePostprocessor(PIIAnonymizer(operator="replace"))
        >>> [n.node.get_content() for n in pp.postprocess_nodes(
        ...     [NodeWithScore(node=TextNode(text="Mail ana@example.org"), score=1.0)])]
        ['Mail <EMAIL_ADDRESS>']
    """

    _anonymizer: PIIAnonymizer = PrivateAttr()

    def __init__(self, anonymizer: PIIAnonymizer | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._anonymizer = anonymizer if anonymizer is not None else PIIAnonymizer()

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "PIINodePostprocessor"

    @property
    def anonymizer(self) -> PIIAnonymizer:
        """The anonymizer in use."""
        return self._anonymizer

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return [self._one(item) for item in nodes]

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        return [self._one(item) for item in nodes]

    def _one(self, item: NodeWithScore) -> NodeWithScore:
        node = item.node
        result = self._anonymizer.anonymize(node.get_content())
        # String metadata rides along: into the LLM prompt (unless excluded) and any cache.
        metadata = {
            key: self._anonymizer.anonymize(value).text if isinstance(value, str) else value
            for key, value in node.metadata.items()
        }
        if not result.entities and metadata == node.metadata:
            return item
        copy = node.model_copy()
        copy.set_content(result.text)
        copy.metadata = metadata
        return NodeWithScore(node=copy, score=item.score)


class PIITransform(TransformComponent):
    """Anonymizes documents in an ``IngestionPipeline``, before they are embedded and stored.

    Put it before the embedding step: the vector store, the docstore and every
    cache then hold pseudonyms, not PII. With the same key (and a shared
    vault) as the query-side :class:`PIIAnonymizer`, a value in a document
    and in a query gets the same pseudonym, so retrieval still matches.

    Args:
        anonymizer: the :class:`PIIAnonymizer` (default: ``PIIAnonymizer()``).
        metadata_keys: string metadata fields to anonymize as well.

    Example:
        >>> from llama_index.core import Document
        >>> t = PIITransform(PIIAnonymizer(operator="replace"))
        >>> t([Document(text="Call +49 30 1234567")])[0].text
        'Call <PHONE_NUMBER>'
    """

    metadata_keys: tuple[str, ...] = ()
    #: identifies the anonymizer's configuration (key, operators, types) without revealing
    #: the key, so an IngestionPipeline cache never mixes outputs of two configurations
    config_id: str = ""
    _anonymizer: PIIAnonymizer = PrivateAttr()

    def __init__(
        self,
        anonymizer: PIIAnonymizer | None = None,
        *,
        metadata_keys: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.metadata_keys = tuple(metadata_keys)
        self._anonymizer = anonymizer if anonymizer is not None else PIIAnonymizer()
        self.config_id = self._anonymizer.fingerprint()

    @classmethod
    def class_name(cls) -> str:
        """LlamaIndex's serialisation name."""
        return "PIITransform"

    @property
    def anonymizer(self) -> PIIAnonymizer:
        """The anonymizer in use."""
        return self._anonymizer

    def __call__(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Anonymize each node's text (and the chosen metadata) in place; return the nodes."""
        for node in nodes:
            result = self._anonymizer.anonymize(node.get_content())
            if result.entities:
                node.set_content(result.text)
            for key in self.metadata_keys:
                value = node.metadata.get(key)
                if isinstance(value, str):
                    node.metadata[key] = self._anonymizer.anonymize(value).text
        return nodes

    async def acall(self, nodes: Sequence[BaseNode], **kwargs: Any) -> Sequence[BaseNode]:
        """Like ``__call__`` (the work is CPU-bound and fast)."""
        return self(nodes, **kwargs)
