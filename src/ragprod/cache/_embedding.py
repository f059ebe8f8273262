"""CachedEmbedding: vectors cached as packed float32, keyed by model identity."""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from pydantic import PrivateAttr

from ragprod.cache._keys import KeySpace, fingerprint
from ragprod.cache._serde import MISS, to_float32
from ragprod.cache._step import CacheLike, as_tiered
from ragprod.cache._tiered import TieredCache
from ragprod.metrics import RagMetrics

__all__ = ["CachedEmbedding"]


# One embedding lookup as a flow of operations; the sync and async drivers run it.
_EmbedOp = tuple[str, Any]


class CachedEmbedding(BaseEmbedding):
    """An embedding model whose vectors are cached as compact float32, keyed by model identity.

    A real ``BaseEmbedding``: query, text and batch methods, sync and async.
    A batch costs one L1 pass, one Redis ``MGET`` for the L1 misses, one
    upstream batch call for the remaining misses (duplicates embedded once)
    and one pipelined write. Keys include the model's fingerprint (class,
    ``model_name``, dimensions and other settings), so two models never share
    vectors; query and text embeddings are keyed apart. Vectors are stored and
    returned as float32 values (a miss returns the same rounded values a
    later hit will).

    Args:
        embed_model: the model to cache (held privately; ``embed_model`` property).
        cache: a ``TieredCache``, ``MemoryCache`` or ``RedisCache``.
        namespace: the invalidation unit.
        ttl: seconds vectors live (default: the tiers' own).
        metrics: where to count.

    Example:
        >>> from ragprod.cache import CachedEmbedding, TieredCache
        >>> from ragprod.testing import HashEmbedding
        >>> emb = CachedEmbedding(HashEmbedding(dim=8), TieredCache.memory())
        >>> emb.get_text_embedding("hello") == emb.get_text_embedding("hello")
        True
    """

    _inner: BaseEmbedding = PrivateAttr()
    _cache: TieredCache = PrivateAttr()
    _query_keys: KeySpace = PrivateAttr()
    _text_keys: KeySpace = PrivateAttr()
    _namespace: str = PrivateAttr()
    _ttl: float | None = PrivateAttr()

    def __init__(
        self,
        embed_model: BaseEmbedding,
        cache: CacheLike,
        *,
        namespace: str = "embeddings",
        ttl: float | None = None,
        metrics: RagMetrics | None = None,
    ) -> None:
        if not isinstance(embed_model, BaseEmbedding):
            raise TypeError(f"expected a BaseEmbedding, got {type(embed_model).__name__}")
        super().__init__(
            model_name=embed_model.model_name,
            embed_batch_size=embed_model.embed_batch_size,
            callback_manager=embed_model.callback_manager,
            num_workers=embed_model.num_workers,
        )
        self._inner = embed_model
        self._cache = as_tiered(cache, metrics)
        identity = fingerprint(embed_model)
        self._query_keys = KeySpace("embed-query", namespace, identity)
        self._text_keys = KeySpace("embed-text", namespace, identity)
        self._namespace = namespace
        self._ttl = ttl

    @classmethod
    def class_name(cls) -> str:
        return "RagprodCachedEmbedding"

    @property
    def embed_model(self) -> BaseEmbedding:
        """The wrapped embedding model."""
        return self._inner

    @property
    def cache(self) -> TieredCache:
        """The cache vectors are stored in."""
        return self._cache

    def invalidate(self) -> str:
        """Drop every cached vector of this namespace (all processes); O(1)."""
        return self._cache.invalidate(self._namespace)

    # -- the flow, once --------------------------------------------------------------

    def _flow(
        self, keys: KeySpace, texts: Sequence[str], generation: str, upstream: str
    ) -> Generator[_EmbedOp, Any, list[Embedding]]:
        all_keys = [keys.key(t, generation) for t in texts]
        values = self._cache.peek_many(all_keys)
        # L1 holds shared lists: hand out copies. L2 values are decoded fresh.
        values = [v if v is MISS else list(v) for v in values]
        missing = [i for i, v in enumerate(values) if v is MISS]
        if missing:
            found = yield ("l2", [all_keys[i] for i in missing])
            for i, value in zip(missing, found, strict=True):
                values[i] = value
        todo: dict[str, list[int]] = {}
        for i, value in enumerate(values):
            if value is MISS:
                todo.setdefault(all_keys[i], []).append(i)
        if todo:
            firsts = [positions[0] for positions in todo.values()]
            vectors = yield (upstream, [texts[i] for i in firsts])
            rounded = [to_float32(v) for v in vectors]
            for positions, vector in zip(todo.values(), rounded, strict=True):
                for n, i in enumerate(positions):
                    values[i] = vector if n == 0 else list(vector)
            yield ("set_many", list(zip(todo, rounded, strict=True)))
        return values

    def _drive(self, flow: Generator[_EmbedOp, Any, list[Embedding]]) -> list[Embedding]:
        cache, inner = self._cache, self._inner
        calls: dict[str, Callable[[Any], Any]] = {
            "l2": cache.lookup_l2_many,
            "set_many": functools.partial(cache.set_many, ttl=self._ttl, vectors=True),
            "texts": inner.get_text_embedding_batch,
            "query": lambda q: [inner.get_query_embedding(q[0])],
        }
        try:
            op, arg = next(flow)
            while True:
                op, arg = flow.send(calls[op](arg))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _adrive(self, flow: Generator[_EmbedOp, Any, list[Embedding]]) -> list[Embedding]:
        cache, inner = self._cache, self._inner

        async def query(q: list[str]) -> list[Embedding]:
            return [await inner.aget_query_embedding(q[0])]

        calls: dict[str, Callable[[Any], Any]] = {
            "l2": cache.alookup_l2_many,
            "set_many": functools.partial(cache.aset_many, ttl=self._ttl, vectors=True),
            "texts": inner.aget_text_embedding_batch,
            "query": query,
        }
        try:
            op, arg = next(flow)
            while True:
                op, arg = flow.send(await calls[op](arg))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- BaseEmbedding -----------------------------------------------------------------

    def _get_query_embedding(self, query: str) -> Embedding:
        gen = self._cache.generation(self._namespace)
        return self._drive(self._flow(self._query_keys, [query], gen, "query"))[0]

    async def _aget_query_embedding(self, query: str) -> Embedding:
        gen = await self._cache.ageneration(self._namespace)
        return (await self._adrive(self._flow(self._query_keys, [query], gen, "query")))[0]

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        gen = self._cache.generation(self._namespace)
        return self._drive(self._flow(self._text_keys, texts, gen, "texts"))

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        gen = await self._cache.ageneration(self._namespace)
        return await self._adrive(self._flow(self._text_keys, texts, gen, "texts"))

    def get_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Embed ``texts``: one L1 pass, one MGET, one upstream batch for the misses.

        Unlike ``BaseEmbedding``'s loop, the whole list is looked up at once;
        the wrapped model embeds the misses (with its own batch size, events
        and progress bar). Cache hits emit no LlamaIndex embedding events
        (nothing was embedded) and skip re-validating every float.
        """
        return self._get_text_embeddings(list(texts))

    async def aget_text_embedding_batch(
        self, texts: list[str], show_progress: bool = False, **kwargs: Any
    ) -> list[Embedding]:
        """Async :meth:`get_text_embedding_batch`."""
        return await self._aget_text_embeddings(list(texts))
