"""The in-process tier: a thread-safe, size-bounded TTL cache on cachetools."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import cachetools

from ragprod.cache._serde import MISS
from ragprod.errors import ConfigurationError

__all__ = ["MemoryCache"]


class _Entry:
    __slots__ = ("ttl", "value")

    def __init__(self, value: Any, ttl: float) -> None:
        self.value = value
        self.ttl = ttl


def _ttu(_key: str, entry: _Entry, now: float) -> float:
    return now + entry.ttl


class _Store(cachetools.TLRUCache[str, _Entry]):
    """A TLRU cache that reports capacity evictions (not expiries) to a callback."""

    on_evict: Callable[[], None] | None = None

    def popitem(self) -> tuple[str, _Entry]:
        item = super().popitem()
        if self.on_evict is not None:
            self.on_evict()
        return item


class MemoryCache:
    """L1: an in-process LRU cache with a time-to-live per entry.

    Values are kept as Python objects (no encoding), so a hit costs a hash
    lookup under a lock. Entries expire ``ttl`` seconds after they are set
    (or the ``ttl`` passed to :meth:`set`, capped at the cache's own ``ttl``);
    when ``maxsize`` entries are held the least recently used one is evicted.
    Safe to share between threads.

    Args:
        maxsize: the most entries held.
        ttl: the longest an entry lives, in seconds.
        clock: the time source (``time.monotonic``; inject a ``FakeClock`` in tests).

    Raises:
        ConfigurationError: ``maxsize`` below 1 or ``ttl`` not positive.

    Example:
        >>> from ragprod.cache import MemoryCache
        >>> from ragprod.testing import FakeClock
        >>> clock = FakeClock()
        >>> cache = MemoryCache(maxsize=100, ttl=60, clock=clock)
        >>> cache.set("k", None)
        >>> cache.get("k") is None
        True
        >>> clock.advance(61)
        >>> cache.get("k")
        MISS
    """

    def __init__(
        self,
        maxsize: int = 10_000,
        ttl: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problems = [
            *(["MemoryCache maxsize must be at least 1"] if maxsize < 1 else []),
            *(["MemoryCache ttl must be positive"] if ttl <= 0 else []),
        ]
        if problems:
            raise ConfigurationError(problems)
        self.maxsize = maxsize
        self.ttl = float(ttl)
        self.clock = clock
        self._store = _Store(maxsize=maxsize, ttu=_ttu, timer=clock)
        self._store.on_evict = self._evicted
        self._lock = threading.Lock()
        self.evictions = 0

    def _evicted(self) -> None:
        self.evictions += 1
        hook = self.on_evict
        if hook is not None:
            hook()

    #: Called (under the cache lock) each time a live entry is evicted for space.
    on_evict: Callable[[], None] | None = None

    def get(self, key: str, default: Any = MISS) -> Any:
        """The value under ``key``, or ``default`` (``MISS``) if absent or expired."""
        with self._lock:
            entry = self._store.get(key)
        return default if entry is None else entry.value

    def get_many(self, keys: Iterable[str]) -> list[Any]:
        """The values under ``keys`` in order, ``MISS`` for each absent one (one lock pass)."""
        store = self._store
        with self._lock:
            entries = [store.get(k) for k in keys]
        return [MISS if e is None else e.value for e in entries]

    def set(self, key: str, value: Any, ttl: float | None = None) -> None:
        """Store ``value`` (``None`` included) for ``ttl`` seconds (at most the cache's ``ttl``)."""
        life = self.ttl if ttl is None else min(float(ttl), self.ttl)
        if life <= 0:
            return
        with self._lock:
            self._store[key] = _Entry(value, life)

    def set_many(self, items: Iterable[tuple[str, Any]], ttl: float | None = None) -> None:
        """Store several values at once (one lock pass)."""
        life = self.ttl if ttl is None else min(float(ttl), self.ttl)
        if life <= 0:
            return
        with self._lock:
            for key, value in items:
                self._store[key] = _Entry(value, life)

    def delete(self, key: str) -> None:
        """Remove ``key`` if present."""
        with self._lock:
            self._store.pop(key, None)

    def clear(self) -> None:
        """Remove every entry."""
        with self._lock:
            self._store.clear()

    def __len__(self) -> int:
        with self._lock:
            self._store.expire()
            return len(self._store)

    def __repr__(self) -> str:
        return f"MemoryCache(maxsize={self.maxsize}, ttl={self.ttl})"
