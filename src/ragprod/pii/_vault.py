"""``Vault``: the reversible pseudonym -> original mapping, bounded and thread-safe."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog

from ragprod.metrics import RagMetrics

__all__ = ["Vault"]

_log = structlog.get_logger("ragprod.pii")


class Vault:
    """Remembers which original value each pseudonym stands for, so answers can be restored.

    An in-memory LRU map, safe to share between threads. It holds at most
    ``max_entries`` pseudonyms (the least recently used go first) and, with
    ``ttl``, forgets a pseudonym that many seconds after it was last stored.
    Pseudonyms are keyed HMACs of the value (see :class:`PIIAnonymizer`), so a
    forgotten one comes back identical the next time the value is seen.

    With ``store``, any LlamaIndex ``BaseKVStore``, the vault also writes new
    pseudonyms through to it and reads misses from it, so several processes
    (an ingestion job, API workers) restore each other's pseudonyms. Wrap the
    store in ``ragprod.crypto.EncryptedKVStore`` so it holds ciphertext only::

        Vault(store=EncryptedKVStore(RedisKVStore(redis_uri=url), keyring))

    A failing store degrades the vault to memory: the error is counted in
    ``ragprod_pii_vault_errors_total{op}``, logged (``ragprod.pii.vault_unavailable``,
    no values), and the store is skipped for ``retry_after`` seconds.

    Args:
        max_entries: in-memory capacity; must be positive.
        ttl: seconds an in-memory entry lives after its last ``put`` (``None``: no expiry).
        clock: the monotonic clock used for ``ttl`` and ``retry_after``.
        store: an optional shared ``BaseKVStore`` (write-through, read on miss).
        collection: the store collection holding the mappings.
        retry_after: seconds to bypass a store after it failed.
        metrics: where store errors are counted.

    Example:
        >>> v = Vault(max_entries=2)
        >>> v.put("PERSON_0123456789ab", "Ana Lima")
        True
        >>> v.get("PERSON_0123456789ab"), len(v)
        ('Ana Lima', 1)
    """

    def __init__(
        self,
        *,
        max_entries: int = 100_000,
        ttl: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        store: Any = None,
        collection: str = "ragprod_pii_vault",
        retry_after: float = 30.0,
        metrics: RagMetrics | None = None,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be positive")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be positive")
        self.max_entries = max_entries
        self.ttl = ttl
        self.store = store
        self.collection = collection
        self.retry_after = retry_after
        self._clock = clock
        self._data: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._store_down_until = float("-inf")
        self.bind_metrics(metrics or RagMetrics())

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count store errors on ``metrics`` from now on."""
        self._errors = metrics.counter(
            "ragprod_pii_vault_errors_total", "Vault store operations that failed.", ("op",)
        )

    def put(self, pseudonym: str, original: str) -> bool:
        """Store the mapping; ``False`` if ``pseudonym`` already stands for another value."""
        now = self._clock()
        with self._lock:
            held = self._data.get(pseudonym)
            if held is not None and not self._expired(held, now):
                if held[0] != original:
                    return False
                self._data[pseudonym] = (original, now)
                self._data.move_to_end(pseudonym)
                return True
        if self.store is not None:
            shared = self._store_get(pseudonym)
            if shared is not None and shared != original:
                return False
            if shared is None:
                self._store_put(pseudonym, original)
        self._remember(pseudonym, original, now)
        return True

    def _remember(self, pseudonym: str, original: str, now: float) -> None:
        with self._lock:
            self._data[pseudonym] = (original, now)
            self._data.move_to_end(pseudonym)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def put_many(self, mapping: Mapping[str, str]) -> None:
        """Store every pair of ``mapping`` (conflicting pairs are skipped)."""
        for pseudonym, original in mapping.items():
            self.put(pseudonym, original)

    def get(self, pseudonym: str) -> str | None:
        """The original value for ``pseudonym``, or ``None`` if unknown or expired."""
        with self._lock:
            held = self._data.get(pseudonym)
            if held is not None:
                if not self._expired(held, self._clock()):
                    self._data.move_to_end(pseudonym)
                    return held[0]
                del self._data[pseudonym]
        if self.store is None:
            return None
        shared = self._store_get(pseudonym)
        if shared is not None:
            self._remember(pseudonym, shared, self._clock())
        return shared

    def _expired(self, held: tuple[str, float], now: float) -> bool:
        return self.ttl is not None and now - held[1] >= self.ttl

    # -- the shared store: failures degrade to memory --------------------------------------

    def _store_usable(self) -> bool:
        return self.store is not None and self._clock() >= self._store_down_until

    def _store_get(self, pseudonym: str) -> str | None:
        if not self._store_usable():
            return None
        try:
            record = self.store.get(pseudonym, collection=self.collection)
        except Exception as exc:  # a down, hung or misconfigured store must not break queries
            self._store_failed("get", exc)
            return None
        value = record.get("v") if isinstance(record, dict) else None
        return value if isinstance(value, str) else None

    def _store_put(self, pseudonym: str, original: str) -> None:
        if not self._store_usable():
            return
        try:
            self.store.put(pseudonym, {"v": original}, collection=self.collection)
        except Exception as exc:
            self._store_failed("put", exc)

    def _store_failed(self, op: str, exc: Exception) -> None:
        self._errors.labels(op=op).inc()
        self._store_down_until = self._clock() + self.retry_after
        _log.warning(
            "ragprod.pii.vault_unavailable",
            op=op,
            error=type(exc).__name__,
            retry_after=self.retry_after,
        )

    def clear(self) -> None:
        """Forget everything held in memory (the shared store is left alone)."""
        with self._lock:
            self._data.clear()

    def __contains__(self, pseudonym: object) -> bool:
        return isinstance(pseudonym, str) and self.get(pseudonym) is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._data))

    def __repr__(self) -> str:
        shared = f", store={type(self.store).__name__}" if self.store is not None else ""
        return f"Vault(entries={len(self)}, max_entries={self.max_entries}, ttl={self.ttl}{shared})"
