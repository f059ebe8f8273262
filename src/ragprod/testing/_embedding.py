"""A deterministic, offline embedding model."""

from __future__ import annotations

import hashlib
import itertools
import math

from llama_index.core.base.embeddings.base import BaseEmbedding
from pydantic import Field

from ragprod.testing._text import words

__all__ = ["HashEmbedding"]


class HashEmbedding(BaseEmbedding):
    """Embed text by hashing its words into a fixed number of dimensions.

    Each lower-cased word (and, with ``ngrams=2``, each pair of adjacent words)
    is hashed with BLAKE2b to a dimension and a sign; the vector is the
    L2-normalised sum. Texts that share words therefore have a positive cosine
    similarity, which is all a retrieval test needs, and the same text always
    gets the same vector on every machine and Python version. No network, no
    weights.

    Args:
        dim: the number of dimensions (at least 8).
        ngrams: 1 for words only, 2 to add word pairs.
        model_name: reported in ``model_name``; defaults to ``"ragprod-hash-<dim>"``.

    Example:
        >>> from ragprod.testing import HashEmbedding
        >>> emb = HashEmbedding(dim=64)
        >>> len(emb.get_text_embedding("refund policy"))
        64
    """

    dim: int = Field(default=256, ge=8, description="Number of dimensions.")
    ngrams: int = Field(default=1, ge=1, le=2, description="1: words; 2: words and pairs.")

    def __init__(self, dim: int = 256, ngrams: int = 1, **kwargs: object) -> None:
        kwargs.setdefault("model_name", f"ragprod-hash-{dim}")
        super().__init__(dim=dim, ngrams=ngrams, **kwargs)  # type: ignore[call-arg,arg-type]

    @classmethod
    def class_name(cls) -> str:
        return "RagprodHashEmbedding"

    def embed(self, text: str) -> list[float]:
        """The embedding of ``text`` (an all-zero vector for text without words)."""
        vector = [0.0] * self.dim
        tokens = words(text)
        features = list(tokens)
        if self.ngrams == 2:
            features += [f"{a} {b}" for a, b in itertools.pairwise(tokens)]
        for feature in features:
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
            value = int.from_bytes(digest, "little")
            index = value % self.dim
            vector[index] += 1.0 if (value >> 63) & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0.0:
            return vector
        return [v / norm for v in vector]

    def _get_query_embedding(self, query: str) -> list[float]:
        return self.embed(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self.embed(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self.embed(text)

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return self.embed(text)

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [self.embed(t) for t in texts]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [self.embed(t) for t in texts]
