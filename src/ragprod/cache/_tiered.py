"""L1 + L2 behind one API, written once as generator flows with a sync and an async driver."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import structlog

from ragprod.cache._flight import Flights
from ragprod.cache._flows import TierFlows
from ragprod.cache._memory import MemoryCache
from ragprod.cache._redis import RedisCache
from ragprod.cache._serde import (
    MISS,
)
from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics

__all__ = ["TieredCache"]

T = TypeVar("T")
TTL = float | Callable[[Any], float | None] | None

_log = structlog.get_logger("ragprod.cache")
_GENERATION = "\x00generation:"  # flight keys for generation reads (never a cache key)


def _noop() -> None:
    pass


class TieredCache(TierFlows):
    """L1 in-process + L2 Redis, with namespaces, single-flight and failure immunity.

    Reads try L1, then L2; an L2 hit is decoded and backfilled into L1.
    Writes go to both (L2 gets the encoded bytes: never pickle, see
    ``ragprod.cache._serde``). Redis problems never raise: L1 keeps serving
    and L2 is bypassed while its breaker is open. Every method has an async
    twin (``aget``, ``aset``...), both driven from one implementation.

    Namespaces make invalidation O(1): keys embed the namespace's generation
    (:meth:`generation`), and :meth:`invalidate` bumps it (``INCR`` in Redis,
    so every process moves on; each process re-reads a namespace's generation
    at most every ``generation_ttl`` seconds). Old entries are never read
    again and expire on their own.

    Args:
        l1: the in-process tier, or ``None`` for none.
        l2: the Redis tier, or ``None`` for none.
        generation_ttl: seconds a namespace generation read from Redis is trusted.
        compress_threshold: encoded values at least this long are compressed.
        lock_wait: turn on cross-process single-flight: on a miss in both tiers
            one process takes a Redis lock (``SET NX PX``, ``lock_ttl`` seconds)
            and computes; the others poll Redis every ``lock_poll`` seconds for
            up to ``lock_wait`` seconds, then compute anyway. Off (``None``) by
            default: it trades waiting latency for upstream calls.
        clock: the time source; ``sleep``/``asleep`` the waits of ``lock_wait``.
        metrics: where to count (default: ``l2``'s, else a private registry).

    Metrics: ``ragprod_cache_hits_total{tier}``, ``ragprod_cache_misses_total``,
    ``ragprod_cache_corrupt_total``, ``ragprod_cache_skipped_total{reason}``,
    ``ragprod_cache_evictions_total``, ``ragprod_cache_singleflight_waits_total``,
    ``ragprod_cache_l2_seconds``, plus :class:`RedisCache`'s error counters.

    Example:
        >>> from ragprod.cache import TieredCache
        >>> cache = TieredCache.memory()
        >>> cache.set("k", {"answer": 42})
        >>> cache.get("k")
        {'answer': 42}
        >>> cache.get_or_compute("other", lambda: None) is None   # None is cacheable
        True
    """

    def __init__(
        self,
        l1: MemoryCache | None = None,
        l2: RedisCache | None = None,
        *,
        generation_ttl: float = 1.0,
        compress_threshold: int = 4096,
        lock_wait: float | None = None,
        lock_ttl: float = 30.0,
        lock_poll: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: RagMetrics | None = None,
    ) -> None:
        if l1 is None and l2 is None:
            raise ConfigurationError("a TieredCache needs at least one tier (l1 or l2)")
        self.l1 = l1
        self.l2 = l2
        self.generation_ttl = generation_ttl
        self.compress_threshold = compress_threshold
        self.clock = clock
        self.lock_wait = lock_wait
        self.lock_ttl = lock_ttl
        self.lock_poll = lock_poll
        self._sleep = sleep
        self._asleep = asleep
        self._flights = Flights()
        self._remote: dict[str, int] = {}
        self._local: dict[str, int] = {}
        self._checked: dict[str, float] = {}
        self._generations: dict[str, str] = {}
        if metrics is None and l2 is not None:
            metrics = l2.metrics
        self.bind_metrics(metrics or RagMetrics())

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        maxsize: int = 10_000,
        l1_ttl: float = 300.0,
        generation_ttl: float = 1.0,
        lock_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: RagMetrics | None = None,
        **redis_options: Any,
    ) -> TieredCache:
        """An L1 ``MemoryCache`` in front of a ``RedisCache(url, **redis_options)``.

        ``redis_options`` are :class:`RedisCache`'s (``prefix``, ``ttl``,
        ``ttl_jitter``, ``socket_timeout``, ``cooldown``...).
        """
        l1 = MemoryCache(maxsize, l1_ttl, clock=clock)
        l2 = RedisCache(url, clock=clock, **redis_options)
        return cls(
            l1,
            l2,
            generation_ttl=generation_ttl,
            lock_wait=lock_wait,
            clock=clock,
            metrics=metrics,
        )

    @classmethod
    def memory(
        cls,
        maxsize: int = 10_000,
        ttl: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: RagMetrics | None = None,
    ) -> TieredCache:
        """An in-process-only cache (no Redis)."""
        return cls(MemoryCache(maxsize, ttl, clock=clock), None, clock=clock, metrics=metrics)

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count on ``metrics`` from now on (``harden()`` calls this)."""
        self.metrics = metrics
        hits = metrics.counter("ragprod_cache_hits_total", "Cache hits by tier.", ("tier",))
        self._hit_l1 = hits.labels(tier="l1")
        self._hit_l2 = hits.labels(tier="l2")
        self._miss = metrics.counter("ragprod_cache_misses_total", "Cache lookups that missed.")
        self._corrupt = metrics.counter(
            "ragprod_cache_corrupt_total", "Values in Redis that could not be decoded (misses)."
        )
        self._skipped = metrics.counter(
            "ragprod_cache_skipped_total", "Values not written to Redis.", ("reason",)
        )
        self._waits = metrics.counter(
            "ragprod_cache_singleflight_waits_total",
            "Lookups that waited for an identical in-flight computation.",
        )
        self._l2_seconds = metrics.histogram(
            "ragprod_cache_l2_seconds", "Latency of cache reads that reached Redis."
        )
        evictions = metrics.counter(
            "ragprod_cache_evictions_total", "L1 entries evicted to make room."
        )
        if self.l1 is not None:
            self.l1.on_evict = evictions.inc
        if self.l2 is not None:
            self.l2.bind_metrics(metrics)

    # -- public API (sync) ---------------------------------------------------------

    def get(self, key: str) -> Any:
        """The value under ``key`` from L1, else L2 (backfilling L1), else ``MISS``."""
        return self.lookup(key)[0]

    def lookup(self, key: str) -> tuple[Any, str | None]:
        """Like :meth:`get`, also naming the tier that answered (``"l1"``, ``"l2"`` or ``None``)."""
        value = self.peek(key)
        if value is not MISS:
            return value, "l1"
        return self.lookup_l2(key)

    def peek(self, key: str) -> Any:
        """The value under ``key`` in L1 only (``MISS`` if absent); never touches Redis."""
        if self.l1 is not None:
            value = self.l1.get(key)
            if value is not MISS:
                self._hit_l1.inc()
                return value
        return MISS

    def lookup_l2(self, key: str) -> tuple[Any, str | None]:
        """Read ``key`` from L2 only (backfilling L1 on a hit); counts a miss if absent."""
        if self.l2 is None:
            self._miss.inc()
            return MISS, None
        return self._drive(self._get_flow(key))

    def get_many(self, keys: Sequence[str]) -> list[Any]:
        """Values for ``keys`` in order (``MISS`` for misses): one L1 pass, one MGET."""
        return self._drive(self._get_many_flow(keys))

    def lookup_l2_many(self, keys: Sequence[str]) -> list[Any]:
        """Values for ``keys`` from L2 only, in one MGET (hits are backfilled into L1)."""
        return self._drive(self._l2_many_flow(keys))

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` in both tiers (values Redis cannot hold stay in L1 only)."""
        self._drive(self._set_flow([(key, value)], ttl, False))

    def set_many(
        self, items: Sequence[tuple[str, Any]], ttl: float | None = None, *, vectors: bool = False
    ) -> None:
        """Store several values: one L1 pass, one pipelined Redis write.

        With ``vectors=True`` values are float vectors, stored as packed float32.
        """
        self._drive(self._set_flow(items, ttl, vectors))

    def generation(self, namespace: str) -> str:
        """The current generation of ``namespace`` (part of every key in it).

        Read from Redis the first time and then at most every
        ``generation_ttl`` seconds; concurrent readers share one read.
        """
        if not self._stale(namespace):
            return self._generation_str(namespace)
        return self._flights.run(
            _GENERATION + namespace, lambda: self._drive(self._generation_flow(namespace)), _noop
        )

    def invalidate(self, namespace: str) -> str:
        """Make every entry of ``namespace`` unreachable, in every process; O(1).

        Returns the new generation. If Redis is unavailable the bump is local
        to this process (logged as ``ragprod.cache.invalidate_local_only``).
        """
        return self._drive(self._invalidate_flow(namespace))

    def delete(self, key: str) -> None:
        """Remove ``key`` from both tiers."""
        if self.l1 is not None:
            self.l1.delete(key)
        if self.l2 is not None:
            self.l2.delete(key)

    def single_flight(self, key: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` once for all threads asking for ``key`` at the same time."""
        return self._flights.run(key, fn, self._waits.inc)

    def claim(self, key: str) -> tuple[Any, str | None]:
        """Cross-process single-flight for a miss: ``(value, token)``.

        ``value`` is what another process stored while we waited (``MISS``
        otherwise); ``token`` is set when this process holds the lock and
        must :meth:`release` it after storing. A no-op unless ``lock_wait`` is set.
        """
        if self.lock_wait is None or self.l2 is None:
            return MISS, None
        token = uuid.uuid4().hex
        value, held = self._drive(self._claim(key, token))
        return value, (token if held else None)

    async def aclaim(self, key: str) -> tuple[Any, str | None]:
        """Async :meth:`claim`."""
        if self.lock_wait is None or self.l2 is None:
            return MISS, None
        token = uuid.uuid4().hex
        value, held = await self._adrive(self._claim(key, token))
        return value, (token if held else None)

    def release(self, key: str, token: str | None) -> None:
        """Release a lock taken by :meth:`claim` (no-op for ``None``)."""
        if token is not None and self.l2 is not None:
            self.l2.release_lock(key, token)

    async def arelease(self, key: str, token: str | None) -> None:
        """Async :meth:`release`."""
        if token is not None and self.l2 is not None:
            await self.l2.arelease_lock(key, token)

    def get_or_compute(self, key: str, compute: Callable[[], T], *, ttl: TTL = None) -> T:
        """The cached value of ``key``, or ``compute()`` run once (single-flight) and stored.

        L1 is checked first; concurrent misses then share one flight that reads
        L2 and, on a miss there too, computes and stores. ``ttl`` may be a
        function of the computed value returning seconds (or ``None`` for the
        tiers' default). Exceptions are not cached; concurrent waiters receive
        the same exception.
        """
        value = self.peek(key)
        if value is not MISS:
            return value  # type: ignore[no-any-return]

        def lead() -> T:
            found, _ = self.lookup(key)  # L1 again: a flight may have just finished
            if found is not MISS:
                return found  # type: ignore[no-any-return]
            found, token = self.claim(key)
            if found is not MISS:
                return found  # type: ignore[no-any-return]
            try:
                result = compute()
                self.set(key, result, ttl(result) if callable(ttl) else ttl)
            finally:
                self.release(key, token)
            return result

        return self.single_flight(key, lead)

    # -- public API (async) ------------------------------------------------------

    async def aget(self, key: str) -> Any:
        """Async :meth:`get`."""
        return (await self.alookup(key))[0]

    async def alookup(self, key: str) -> tuple[Any, str | None]:
        """Async :meth:`lookup`."""
        value = self.peek(key)
        if value is not MISS:
            return value, "l1"
        return await self.alookup_l2(key)

    async def alookup_l2(self, key: str) -> tuple[Any, str | None]:
        """Async :meth:`lookup_l2`."""
        if self.l2 is None:
            self._miss.inc()
            return MISS, None
        return await self._adrive(self._get_flow(key))

    async def aget_many(self, keys: Sequence[str]) -> list[Any]:
        """Async :meth:`get_many`."""
        return await self._adrive(self._get_many_flow(keys))

    async def alookup_l2_many(self, keys: Sequence[str]) -> list[Any]:
        """Async :meth:`lookup_l2_many`."""
        return await self._adrive(self._l2_many_flow(keys))

    async def aset(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Async :meth:`set`."""
        await self._adrive(self._set_flow([(key, value)], ttl, False))

    async def aset_many(
        self, items: Sequence[tuple[str, Any]], ttl: float | None = None, *, vectors: bool = False
    ) -> None:
        """Async :meth:`set_many`."""
        await self._adrive(self._set_flow(items, ttl, vectors))

    async def ageneration(self, namespace: str) -> str:
        """Async :meth:`generation`."""
        if not self._stale(namespace):
            return self._generation_str(namespace)
        return await self._flights.arun(
            _GENERATION + namespace, lambda: self._adrive(self._generation_flow(namespace)), _noop
        )

    async def ainvalidate(self, namespace: str) -> str:
        """Async :meth:`invalidate`."""
        return await self._adrive(self._invalidate_flow(namespace))

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`."""
        if self.l1 is not None:
            self.l1.delete(key)
        if self.l2 is not None:
            await self.l2.adelete(key)

    async def asingle_flight(self, key: str, factory: Callable[[], Awaitable[T]]) -> T:
        """Await ``factory()`` once for all tasks of this event loop asking for ``key``."""
        return await self._flights.arun(key, factory, self._waits.inc)

    async def aget_or_compute(
        self, key: str, compute: Callable[[], Awaitable[T]], *, ttl: TTL = None
    ) -> T:
        """Async :meth:`get_or_compute` (``compute`` returns an awaitable)."""
        value = self.peek(key)
        if value is not MISS:
            return value  # type: ignore[no-any-return]

        async def lead() -> T:
            found, _ = await self.alookup(key)
            if found is not MISS:
                return found  # type: ignore[no-any-return]
            found, token = await self.aclaim(key)
            if found is not MISS:
                return found  # type: ignore[no-any-return]
            try:
                result = await compute()
                await self.aset(key, result, ttl(result) if callable(ttl) else ttl)
            finally:
                await self.arelease(key, token)
            return result

        return await self.asingle_flight(key, lead)

    def __repr__(self) -> str:
        return f"TieredCache(l1={self.l1!r}, l2={self.l2!r})"
