"""The logic of ``TieredCache``, once: generator flows of L2 operations and their drivers.

A flow is a generator that does the in-process work itself and yields each
Redis operation as ``(RedisCache method name, *args)`` (or ``("sleep", s)``).
``_drive`` runs it with the sync methods, ``_adrive`` with the ``a``-prefixed
asyncio ones, so the sync and async APIs cannot drift apart.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from typing import Any, TypeVar

import structlog
from prometheus_client import Counter, Histogram

from ragprod.cache._flight import claim_flow
from ragprod.cache._memory import MemoryCache
from ragprod.cache._redis import RedisCache
from ragprod.cache._serde import (
    MISS,
    UnencodableValueError,
    decode,
    encode,
    encode_vector,
    to_float32,
)

__all__ = ["Flow", "TierFlows"]

T = TypeVar("T")
# An L2 operation: the RedisCache method name (``a``-prefixed when async) and its arguments.
Op = tuple[Any, ...]
Flow = Generator[Op, Any, T]

_log = structlog.get_logger("ragprod.cache")


class TierFlows:
    """Flows and drivers shared by :class:`~ragprod.cache.TieredCache`'s sync and async API."""

    l1: MemoryCache | None
    l2: RedisCache | None
    clock: Callable[[], float]
    generation_ttl: float
    compress_threshold: int
    lock_wait: float | None
    lock_ttl: float
    lock_poll: float
    _sleep: Callable[[float], None]
    _asleep: Callable[[float], Awaitable[None]]
    _remote: dict[str, int]
    _local: dict[str, int]
    _checked: dict[str, float]
    _generations: dict[str, str]
    _hit_l1: Any
    _hit_l2: Any
    _miss: Counter
    _corrupt: Counter
    _skipped: Counter
    _l2_seconds: Histogram

    # -- drivers -----------------------------------------------------------------

    def _drive(self, flow: Flow[T]) -> T:
        l2, sleep = self.l2, self._sleep
        try:
            op = next(flow)
            while True:
                call = sleep if op[0] == "sleep" else getattr(l2, op[0])
                op = flow.send(call(*op[1:]))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    async def _adrive(self, flow: Flow[T]) -> T:
        l2, asleep = self.l2, self._asleep
        try:
            op = next(flow)
            while True:
                call = asleep if op[0] == "sleep" else getattr(l2, "a" + op[0])
                op = flow.send(await call(*op[1:]))
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]

    # -- flows (the logic, once) -------------------------------------------------

    def _get_flow(self, key: str) -> Flow[tuple[Any, str | None]]:
        start = time.perf_counter()
        data = yield ("get", key)
        self._l2_seconds.observe(time.perf_counter() - start)
        value = self._accept(key, data)
        return value, (None if value is MISS else "l2")

    def _accept(self, key: str, data: bytes | None) -> Any:
        if data is None:
            self._miss.inc()
            return MISS
        value = decode(data, max_bytes=self._max_bytes())
        if value is MISS:
            self._corrupt.inc()
            self._miss.inc()
            _log.warning("ragprod.cache.corrupt_value", size=len(data))
            return MISS
        self._hit_l2.inc()
        if self.l1 is not None:
            self.l1.set(key, value)
        return value

    def _max_bytes(self) -> int:
        return self.l2.max_value_bytes if self.l2 is not None else 1 << 20

    def peek_many(self, keys: Sequence[str]) -> list[Any]:
        """Values for ``keys`` from L1 only (``MISS`` for each absent one)."""
        if self.l1 is None:
            return [MISS] * len(keys)
        values = self.l1.get_many(keys)
        hits = sum(1 for v in values if v is not MISS)
        if hits:
            self._hit_l1.inc(hits)
        return values

    def _get_many_flow(self, keys: Sequence[str]) -> Flow[list[Any]]:
        values = self.peek_many(keys)
        missing = [i for i, v in enumerate(values) if v is MISS]
        if missing:
            found = yield from self._l2_many_flow([keys[i] for i in missing])
            for i, value in zip(missing, found, strict=True):
                values[i] = value
        return values

    def _l2_many_flow(self, keys: Sequence[str]) -> Flow[list[Any]]:
        if self.l2 is None or not keys:
            self._miss.inc(len(keys))
            return [MISS] * len(keys)
        start = time.perf_counter()
        found = yield ("mget", keys)
        self._l2_seconds.observe(time.perf_counter() - start)
        limit, values, backfill = self._max_bytes(), [], []
        corrupt = 0
        for key, data in zip(keys, found, strict=True):
            value = MISS if data is None else decode(data, max_bytes=limit)
            if value is MISS and data is not None:
                corrupt += 1
            elif value is not MISS:
                backfill.append((key, value))
            values.append(value)
        if backfill:
            self._hit_l2.inc(len(backfill))
            if self.l1 is not None:
                self.l1.set_many(backfill)
        if len(backfill) < len(keys):
            self._miss.inc(len(keys) - len(backfill))
        if corrupt:
            self._corrupt.inc(corrupt)
            _log.warning("ragprod.cache.corrupt_value", count=corrupt)
        return values

    def _set_flow(
        self, items: Sequence[tuple[str, Any]], ttl: float | None, vectors: bool
    ) -> Flow[None]:
        if vectors:
            items = [(k, to_float32(v)) for k, v in items]
        if self.l1 is not None:
            self.l1.set_many(items, ttl)
        if self.l2 is None:
            return
        limit = self.l2.max_value_bytes
        encoded: list[tuple[str, bytes]] = []
        for key, value in items:
            try:
                data = (
                    encode_vector(value)
                    if vectors
                    else encode(value, compress_threshold=self.compress_threshold)
                )
            except UnencodableValueError:
                self._skipped.labels(reason="unencodable").inc()
                continue
            if len(data) > limit:
                self._skipped.labels(reason="oversized").inc()
                continue
            encoded.append((key, data))
        if encoded:
            yield ("set_many", encoded, ttl)

    def _stale(self, namespace: str) -> bool:
        """Whether ``namespace``'s generation must be (re)read from Redis first."""
        if self.l2 is None:
            return False
        if namespace not in self._remote:
            return True  # never read: guessing 0 could serve invalidated entries
        return self.clock() - self._checked[namespace] >= self.generation_ttl

    def _generation_flow(self, namespace: str) -> Flow[str]:
        self._checked[namespace] = self.clock()
        remote = yield ("get_generation", namespace)
        if remote is not None:
            self._set_generation(namespace, remote=remote)
        return self._generation_str(namespace)

    def _generation_str(self, namespace: str) -> str:
        found = self._generations.get(namespace)
        if found is None:
            found = self._set_generation(namespace)
        return found

    def _set_generation(self, namespace: str, *, remote: int | None = None) -> str:
        if remote is not None:
            self._remote[namespace] = remote
        value = f"{self._remote.get(namespace, 0)}.{self._local.get(namespace, 0)}"
        self._generations[namespace] = value
        return value

    def _invalidate_flow(self, namespace: str) -> Flow[str]:
        remote = None
        if self.l2 is not None:
            remote = yield ("bump_generation", namespace)
            self._checked[namespace] = self.clock()
        if remote is None:
            self._local[namespace] = self._local.get(namespace, 0) + 1
            if self.l2 is not None:
                _log.warning("ragprod.cache.invalidate_local_only", namespace=namespace)
        value = self._set_generation(namespace, remote=remote)
        _log.info("ragprod.cache.invalidated", namespace=namespace, generation=value)
        return value

    def _claim(self, key: str, token: str) -> Flow[tuple[Any, bool]]:
        return claim_flow(
            self._get_flow, key, token, wait=self.lock_wait or 0.0, ttl=self.lock_ttl,
            poll=self.lock_poll, clock=self.clock, miss=MISS,
        )  # fmt: skip
