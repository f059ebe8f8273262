"""Cached drop-ins for LlamaIndex's query engine, retriever and embedding model."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle

from ragprod._pipeline import StepQueryEngine
from ragprod.cache._keys import KeySpace, fingerprint
from ragprod.cache._step import CacheLike, CacheStep, Tenant, as_tiered, query_text
from ragprod.cache._tiered import TieredCache
from ragprod.metrics import RagMetrics

__all__ = ["CachedQueryEngine", "CachedRetriever", "invalidate_on_change"]

T = TypeVar("T")


class CachedQueryEngine(StepQueryEngine):
    """A query engine that answers repeated queries from L1/L2 and computes misses once.

    A thin shell around one :class:`~ragprod.cache._step.CacheStep` (the same
    step ``ragprod.harden(cache=...)`` uses). Streaming engines keep
    streaming: a miss streams through and is stored when the stream ends; a
    hit replays the stored answer as a one-chunk stream.

    Args:
        engine: the query engine to cache.
        cache: a ``TieredCache`` (``TieredCache.from_url(...)``, ``TieredCache.memory()``),
            a ``MemoryCache`` or a ``RedisCache``.
        namespace: the invalidation unit; :meth:`invalidate` bumps it.
        tenant: keeps tenants apart: a string, or a function returning the
            current tenant (e.g. reading a context variable).
        ttl: seconds answers live (default: the tiers' own).
        empty_ttl: seconds empty answers live.
        fingerprint: the engine identity (default: computed once from ``engine``).
        index_version: mixed into the key; change it when the index changes.
        metrics: where to count (a private registry by default).
        name: the engine name in metrics.

    Example:
        >>> from ragprod.cache import CachedQueryEngine, TieredCache
        >>> from ragprod.testing import FaultyQueryEngine
        >>> inner = FaultyQueryEngine(answer="42")
        >>> engine = CachedQueryEngine(inner, TieredCache.memory())
        >>> str(engine.query("meaning?")), str(engine.query("meaning?")), inner.calls
        ('42', '42', 1)
    """

    def __init__(
        self,
        engine: BaseQueryEngine,
        cache: CacheLike,
        *,
        namespace: str = "default",
        tenant: Tenant = None,
        ttl: float | None = None,
        empty_ttl: float = 30.0,
        fingerprint: str | None = None,
        index_version: str | int | None = None,
        metrics: RagMetrics | None = None,
        name: str = "default",
    ) -> None:
        step = CacheStep(
            cache,
            engine=engine,
            fingerprint=fingerprint,
            namespace=namespace,
            tenant=tenant,
            index_version=index_version,
            ttl=ttl,
            empty_ttl=empty_ttl,
            metrics=metrics,
            name=name,
        )
        super().__init__(engine, [step])
        self._step = step

    @property
    def cache(self) -> TieredCache:
        """The cache answers are stored in."""
        return self._step.cache

    @property
    def namespace(self) -> str:
        """This engine's namespace."""
        return self._step.namespace

    def invalidate(self) -> str:
        """Drop every cached answer of this engine's namespace (all processes); O(1)."""
        return self._step.cache.invalidate(self._step.namespace)

    async def ainvalidate(self) -> str:
        """Async :meth:`invalidate`."""
        return await self._step.cache.ainvalidate(self._step.namespace)


def _copy_nodes(nodes: Sequence[NodeWithScore]) -> list[NodeWithScore]:
    # Fresh NodeWithScore wrappers: rerankers and postprocessors set scores in place.
    return [NodeWithScore(node=n.node, score=n.score) for n in nodes]


class CachedRetriever(BaseRetriever):
    """A retriever whose results are cached per query, with single-flight misses.

    Keys cover the retriever's fingerprint (type, ``similarity_top_k``,
    filters, query mode, index id, embedding model...), namespace, tenant and
    query. Both ``retrieve`` and ``aretrieve`` are real: the async path never
    blocks the event loop.

    Args:
        retriever: the retriever to cache.
        cache: a ``TieredCache``, ``MemoryCache`` or ``RedisCache``.
        namespace, tenant, ttl, empty_ttl, fingerprint, index_version, metrics:
            as for :class:`CachedQueryEngine`.

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from ragprod.cache import CachedRetriever, TieredCache
        >>> from ragprod.testing import HashEmbedding
        >>> index = VectorStoreIndex.from_documents(
        ...     [Document(text="refunds take 5 days")], embed_model=HashEmbedding(dim=32))
        >>> retriever = CachedRetriever(index.as_retriever(), TieredCache.memory())
        >>> [n.node.get_content() for n in retriever.retrieve("refunds")]
        ['refunds take 5 days']
    """

    def __init__(
        self,
        retriever: BaseRetriever,
        cache: CacheLike,
        *,
        namespace: str = "default",
        tenant: Tenant = None,
        ttl: float | None = None,
        empty_ttl: float = 30.0,
        fingerprint: str | None = None,
        index_version: str | int | None = None,
        metrics: RagMetrics | None = None,
    ) -> None:
        if not isinstance(retriever, BaseRetriever):
            raise TypeError(f"expected a BaseRetriever, got {type(retriever).__name__}")
        self._retriever = retriever
        self._cache = as_tiered(cache, metrics)
        fp = fingerprint if fingerprint is not None else _fingerprint_of(retriever)
        self._keys = KeySpace("retrieve", namespace, fp, {"v": index_version})
        self.namespace = namespace
        self._tenant = tenant
        self._ttl = ttl
        self._empty_ttl = empty_ttl
        super().__init__(callback_manager=retriever.callback_manager)

    @property
    def cache(self) -> TieredCache:
        """The cache results are stored in."""
        return self._cache

    def _get_prompt_modules(self) -> PromptMixinType:
        return {"retriever": self._retriever}

    def _key(self, query: QueryBundle, generation: str) -> str:
        tenant = self._tenant() if callable(self._tenant) else self._tenant
        return self._keys.key(query_text(query), generation, tenant)

    def _life(self, nodes: Sequence[NodeWithScore]) -> float | None:
        return self._ttl if nodes else self._empty_ttl

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        key = self._key(query_bundle, self._cache.generation(self.namespace))
        nodes = self._cache.get_or_compute(
            key, lambda: self._retriever.retrieve(query_bundle), ttl=self._life
        )
        return _copy_nodes(nodes)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        key = self._key(query_bundle, await self._cache.ageneration(self.namespace))
        nodes = await self._cache.aget_or_compute(
            key, lambda: self._retriever.aretrieve(query_bundle), ttl=self._life
        )
        return _copy_nodes(nodes)

    def invalidate(self) -> str:
        """Drop every cached retrieval of this namespace (all processes); O(1)."""
        return self._cache.invalidate(self.namespace)

    def __repr__(self) -> str:
        return f"<CachedRetriever {type(self._retriever).__name__} namespace={self.namespace!r}>"


def _fingerprint_of(obj: Any) -> str:
    return fingerprint(obj)


_INDEX_MUTATORS = (
    "insert",
    "insert_nodes",
    "delete",
    "delete_ref_doc",
    "delete_nodes",
    "update",
    "update_ref_doc",
    "refresh",
    "refresh_ref_docs",
)
_AINDEX_MUTATORS = ("ainsert", "ainsert_nodes", "adelete_ref_doc", "adelete_nodes")


def invalidate_on_change(index: T, cache: CacheLike, namespace: str = "default") -> T:
    """Make ``index`` bump ``namespace`` after every insert, delete, update or refresh.

    Wraps the index's mutating methods (``insert``, ``insert_nodes``,
    ``delete_ref_doc``, ``delete_nodes``, ``update_ref_doc``,
    ``refresh_ref_docs`` and their async twins) on this instance, so answers
    cached before a change are never served after it, in any process.
    Returns the same index. Changes made behind LlamaIndex's back (another
    process writing the vector store) still need ``cache.invalidate(namespace)``.

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from ragprod.cache import TieredCache, invalidate_on_change
        >>> from ragprod.testing import HashEmbedding
        >>> cache = TieredCache.memory()
        >>> index = invalidate_on_change(
        ...     VectorStoreIndex([], embed_model=HashEmbedding(dim=16)), cache, "docs")
        >>> before = cache.generation("docs")
        >>> from structlog.testing import capture_logs
        >>> with capture_logs():  # the bump is logged as ragprod.cache.invalidated
        ...     index.insert(Document(text="new policy"))
        >>> cache.generation("docs") != before
        True
    """
    tiered = as_tiered(cache)
    for name in _INDEX_MUTATORS:
        method = getattr(index, name, None)
        if callable(method):
            setattr(index, name, _after(method, lambda: tiered.invalidate(namespace)))
    for name in _AINDEX_MUTATORS:
        method = getattr(index, name, None)
        if callable(method):
            setattr(index, name, _aafter(method, lambda: tiered.ainvalidate(namespace)))
    return index


# Set while a watched mutator runs: a mutator calling another (insert -> insert_nodes)
# bumps the namespace once, when the outermost call returns.
_MUTATING: contextvars.ContextVar[bool] = contextvars.ContextVar("ragprod_mutating", default=False)


def _after(method: Callable[..., Any], hook: Callable[[], Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _MUTATING.get():
            return method(*args, **kwargs)
        token = _MUTATING.set(True)
        try:
            return method(*args, **kwargs)
        finally:
            _MUTATING.reset(token)
            hook()

    return wrapper


def _aafter(method: Callable[..., Any], hook: Callable[[], Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _MUTATING.get():
            return await method(*args, **kwargs)
        token = _MUTATING.set(True)
        try:
            return await method(*args, **kwargs)
        finally:
            _MUTATING.reset(token)
            await hook()

    return wrapper
