"""The cache layer as a query step, and its hook for ``ragprod.harden``."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Callable, Generator
from typing import Any

import structlog
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.schema import QueryBundle
from opentelemetry import trace

from ragprod._pipeline import AsyncNext, SyncNext
from ragprod.cache._keys import KeySpace, fingerprint
from ragprod.cache._memory import MemoryCache
from ragprod.cache._redis import RedisCache
from ragprod.cache._serde import StreamedResponse
from ragprod.cache._tiered import TieredCache
from ragprod.metrics import RagMetrics

__all__ = ["CacheStep", "as_tiered", "make_step", "query_text"]

_log = structlog.get_logger("ragprod.cache")

Tenant = str | Callable[[], str | None] | None
# What a single flight hands every caller: ("value", stored Response, tier it came from
# or None if freshly computed), ("stream", the leader's tee, None), or ("passthrough",
# an uncacheable result, None).
_Outcome = tuple[str, Any, str | None]
CacheLike = TieredCache | MemoryCache | RedisCache


def as_tiered(cache: CacheLike | bool | None, metrics: RagMetrics | None = None) -> TieredCache:
    """Accept any ragprod cache (or ``True`` for an in-memory one) as a ``TieredCache``."""
    if cache is True or cache is None:
        return TieredCache.memory(metrics=metrics)
    if isinstance(cache, TieredCache):
        if metrics is not None:
            cache.bind_metrics(metrics)
        return cache
    if isinstance(cache, MemoryCache):
        return TieredCache(cache, None, clock=cache.clock, metrics=metrics)
    if isinstance(cache, RedisCache):
        return TieredCache(None, cache, clock=cache.breaker.clock, metrics=metrics)
    raise TypeError(
        f"cache= takes a TieredCache, MemoryCache, RedisCache or True, got {type(cache).__name__}"
    )


def query_text(query: QueryBundle) -> str:
    """The part of a query bundle that is keyed: the query and any custom embedding strings."""
    if not query.custom_embedding_strs and query.embedding is None:
        return query.query_str
    return json.dumps([query.query_str, query.custom_embedding_strs, query.embedding])


def _clone(response: Response) -> Response:
    metadata = dict(response.metadata) if response.metadata is not None else None
    return Response(response.response, list(response.source_nodes), metadata)


def _replay(text: str) -> Generator[str, None, None]:
    yield text


async def _areplay(text: str) -> AsyncGenerator[str, None]:
    yield text


class CacheStep:
    """Answer repeated queries from the cache; compute each miss once.

    The step keys a query by namespace, its generation, tenant, the engine's
    fingerprint (computed once here) and the query text (hashed). On a hit
    it returns a fresh ``Response`` (or a one-chunk stream when the answer
    was streamed); on a miss it calls the rest of the chain once for all
    concurrent identical queries (single-flight) and stores the answer.
    Errors are never cached; empty answers are cached for ``empty_ttl``.
    A streaming answer streams through to the caller and is stored when the
    stream completes (an abandoned or failed stream is not stored).

    Args:
        cache: a ``TieredCache`` (or ``MemoryCache``/``RedisCache``, or ``True``).
        engine: the engine whose configuration is fingerprinted.
        fingerprint: use this identity instead of computing one from ``engine``.
        namespace: the invalidation unit (``cache.invalidate(namespace)``).
        tenant: a tenant id, or a function returning the current one.
        index_version: mixed into the fingerprint (bump it to re-key).
        ttl: seconds answers live (default: the tiers' own).
        empty_ttl: seconds empty answers live.
        metrics: where to count ``ragprod_cache_queries_total{engine,outcome}``.
        name: the engine name in metrics.
    """

    name = "cache"

    def __init__(
        self,
        cache: CacheLike | bool,
        *,
        engine: Any = None,
        fingerprint: str | None = None,
        namespace: str = "default",
        tenant: Tenant = None,
        index_version: str | int | None = None,
        ttl: float | None = None,
        empty_ttl: float = 30.0,
        metrics: RagMetrics | None = None,
        name: str = "default",
    ) -> None:
        if metrics is None and isinstance(cache, TieredCache):
            metrics = cache.metrics  # keep counting where the cache already counts
        self.metrics = metrics or RagMetrics()
        self.cache = as_tiered(cache, self.metrics)
        if fingerprint is None:
            fingerprint = _fingerprint(engine, index_version)
        elif index_version is not None:
            fingerprint = f"{fingerprint}|{index_version}"
        self.fingerprint = fingerprint
        self.namespace = namespace
        self.tenant = tenant
        self.ttl = ttl
        self.empty_ttl = empty_ttl
        self.engine_name = name
        self._keys = KeySpace("query", namespace, fingerprint)
        queries = self.metrics.counter(
            "ragprod_cache_queries_total", "Queries seen by the cache layer.", ("engine", "outcome")
        )
        self._hit = queries.labels(engine=name, outcome="hit")
        self._miss = queries.labels(engine=name, outcome="miss")
        self._shared = queries.labels(engine=name, outcome="shared")

    # -- decisions shared by both drivers ----------------------------------------

    def key(self, query: QueryBundle, generation: str) -> str:
        """The cache key of ``query`` at ``generation``."""
        tenant = self.tenant() if callable(self.tenant) else self.tenant
        return self._keys.key(query_text(query), generation, tenant)

    def _on_hit(self, value: Response, tier: str | None, asynchronous: bool) -> RESPONSE_TYPE:
        self._hit.inc()
        _annotate(True, tier)
        return self._replay_or_clone(value, asynchronous)

    def _life(self, response: Response) -> float | None:
        return self.empty_ttl if not (response.response or "").strip() else self.ttl

    def _record(self, parts: list[str], result: Any) -> StreamedResponse:
        metadata = dict(result.metadata) if result.metadata is not None else None
        return StreamedResponse("".join(parts), list(result.source_nodes), metadata)

    def _finish(self, outcome: _Outcome, led: bool, asynchronous: bool) -> RESPONSE_TYPE | None:
        """Turn a flight's outcome into this caller's response (``None``: call upstream)."""
        kind, payload, tier = outcome
        if kind != "value":
            # A live stream (or an uncacheable result) belongs to the leader;
            # a waiter calls upstream for its own.
            return payload if led else None
        if not led:
            self._shared.inc()
        elif tier is not None:
            return self._on_hit(payload, tier, asynchronous)
        return self._replay_or_clone(payload, asynchronous)

    def _replay_or_clone(self, value: Response, asynchronous: bool) -> RESPONSE_TYPE:
        if isinstance(value, StreamedResponse):
            text, nodes = value.response or "", list(value.source_nodes)
            if asynchronous:
                return AsyncStreamingResponse(_areplay(text), nodes, value.metadata)
            return StreamingResponse(_replay(text), nodes, value.metadata)
        return _clone(value)

    def _computed(self, key: str, result: Any, asynchronous: bool) -> _Outcome:
        """Classify a fresh upstream result: a value to store, a stream to tee, or neither."""
        if isinstance(result, StreamingResponse) and not asynchronous:
            return ("stream", self._tee(key, result), None)
        if isinstance(result, AsyncStreamingResponse) and asynchronous:
            return ("stream", self._atee(key, result), None)
        if isinstance(result, Response):
            return ("value", result, None)
        return ("passthrough", result, None)  # e.g. PydanticResponse: not cached

    # -- sync driver -----------------------------------------------------------------

    def handle(self, query: QueryBundle, call_next: SyncNext) -> RESPONSE_TYPE:
        """Serve ``query`` from the cache, or compute it once and store it."""
        cache = self.cache
        key = self.key(query, cache.generation(self.namespace))
        value = cache.peek(key)
        if isinstance(value, Response):
            return self._on_hit(value, "l1", False)
        led: list[bool] = []

        def lead() -> _Outcome:
            led.append(True)
            found, tier = cache.lookup(key)  # L1 again (a flight may just have ended), then L2
            if isinstance(found, Response):
                return ("value", found, tier)
            found, token = cache.claim(key)  # other processes (only with lock_wait set)
            if isinstance(found, Response):
                return ("value", found, "l2")
            self._miss.inc()
            _annotate(False, None)
            try:
                outcome = self._computed(key, call_next(query), False)
                if outcome[0] == "value":
                    cache.set(key, _clone(outcome[1]), self._life(outcome[1]))
            finally:
                cache.release(key, token)
            return outcome

        response = self._finish(cache.single_flight(key, lead), bool(led), False)
        return response if response is not None else call_next(query)

    def _tee(self, key: str, result: StreamingResponse) -> StreamingResponse:
        def stream() -> Generator[str, None, None]:
            parts: list[str] = []
            for token in result.response_gen:
                parts.append(token)
                yield token
            record = self._record(parts, result)
            self.cache.set(key, record, self._life(record))

        return StreamingResponse(stream(), result.source_nodes, result.metadata)

    # -- async driver ----------------------------------------------------------------

    async def ahandle(self, query: QueryBundle, call_next: AsyncNext) -> RESPONSE_TYPE:
        """Async :meth:`handle` (single-flight across the tasks of the event loop)."""
        cache = self.cache
        key = self.key(query, await cache.ageneration(self.namespace))
        value = cache.peek(key)
        if isinstance(value, Response):
            return self._on_hit(value, "l1", True)
        led: list[bool] = []

        async def lead() -> _Outcome:
            led.append(True)
            found, tier = await cache.alookup(key)
            if isinstance(found, Response):
                return ("value", found, tier)
            found, token = await cache.aclaim(key)
            if isinstance(found, Response):
                return ("value", found, "l2")
            self._miss.inc()
            try:
                outcome = self._computed(key, await call_next(query), True)
                if outcome[0] == "value":
                    await cache.aset(key, _clone(outcome[1]), self._life(outcome[1]))
            finally:
                await cache.arelease(key, token)
            return outcome

        _annotate(False, None)
        response = self._finish(await cache.asingle_flight(key, lead), bool(led), True)
        return response if response is not None else await call_next(query)

    def _atee(self, key: str, result: AsyncStreamingResponse) -> AsyncStreamingResponse:
        async def stream() -> AsyncGenerator[str, None]:
            parts: list[str] = []
            async for token in result.response_gen:
                parts.append(token)
                yield token
            record = self._record(parts, result)
            await self.cache.aset(key, record, self._life(record))

        return AsyncStreamingResponse(stream(), result.source_nodes, result.metadata)

    def __repr__(self) -> str:
        return f"CacheStep(namespace={self.namespace!r}, cache={self.cache!r})"


def _annotate(hit: bool, tier: str | None) -> None:
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("cache.hit", hit)
        if tier is not None:
            span.set_attribute("cache.tier", tier)


def _fingerprint(engine: Any, index_version: str | int | None) -> str:
    if engine is None:
        return "" if index_version is None else str(index_version)
    return fingerprint(engine, index_version)


def make_step(
    config: CacheLike | bool, *, engine: BaseQueryEngine, metrics: RagMetrics, name: str
) -> CacheStep:
    """The cache step for ``harden(cache=...)``.

    ``config`` is a ``TieredCache`` (or ``MemoryCache``/``RedisCache``), a
    ready ``CacheStep`` (used as is), or ``True`` for an in-memory cache. The
    namespace is the engine ``name``.
    """
    if isinstance(config, CacheStep):
        return config
    if config is not True and not isinstance(config, (TieredCache, MemoryCache, RedisCache)):
        raise TypeError(
            "cache= takes a TieredCache, MemoryCache, RedisCache, CacheStep or True, "
            f"got {type(config).__name__}"
        )
    return CacheStep(config, engine=engine, metrics=metrics, namespace=name, name=name)
