"""``RateLimiter``: token buckets, in process or shared through Redis."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import redis

from ragprod.errors import ConfigurationError, RateLimitedError
from ragprod.metrics import RagMetrics
from ragprod.resilience._signals import Signals, log, log_throttled, span_event

__all__ = ["RateLimiter"]

_LUA = r"""
local rate, burst, need, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]),
  tonumber(ARGV[4])
local h = redis.call("HMGET", KEYS[1], "tokens", "ts")
local tokens = tonumber(h[1]) or burst
local ts = tonumber(h[2]) or now
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate) end
local wait = 0
if tokens >= need then tokens = tokens - need else wait = (need - tokens) / rate end
redis.call("HSET", KEYS[1], "tokens", tostring(tokens), "ts", tostring(math.max(now, ts)))
redis.call("PEXPIRE", KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""

_MAX_LOCAL_KEYS = 10_000


class RateLimiter:
    """A token bucket: ``rate`` calls per second on average, bursts up to ``burst``.

    A call takes one token; with none left it is refused with
    :class:`~ragprod.errors.RateLimitedError`, whose ``retry_after`` says when
    the next token arrives. Buckets are per key: ``key`` may be a fixed
    string, or a function called for each acquisition (e.g. reading the
    current tenant from a ``contextvars.ContextVar``), or ``None`` for one
    bucket. Keys are hashed before use in Redis; they never appear in
    metrics or logs.

    With ``store`` (a ``redis.Redis`` client or URL) the buckets live in Redis,
    so all replicas share one limit per key: one round trip (a Lua script)
    per acquisition. If Redis fails, the limiter falls back to its local
    buckets (so each replica enforces the limit on its own), counts
    ``ragprod_resilience_store_errors_total`` and logs
    ``ragprod.resilience.store_unavailable``; it tries Redis again after
    ``retry_interval`` seconds.

    Args:
        rate: tokens added per second.
        burst: bucket size (default: ``max(1, rate)``).
        key: the bucket key, or a function returning it.
        store: Redis client or URL for shared buckets.
        name: the protected resource, for errors, metrics and logs.
        prefix: Redis key prefix.
        clock: time in seconds (wall time with a store, so replicas agree).
        retry_interval: seconds to stay local after a Redis error.
        metrics: where to count refusals.

    Raises:
        ConfigurationError: ``rate`` or ``burst`` is not positive.

    Example:
        >>> from ragprod.testing import FakeClock
        >>> limiter = RateLimiter(rate=1, burst=2, clock=FakeClock())
        >>> limiter.acquire(); limiter.acquire()
        >>> limiter.acquire()
        Traceback (most recent call last):
        ...
        ragprod.errors.RateLimitedError: rate limited: default; retry after 1.000s
    """

    def __init__(
        self,
        rate: float,
        burst: float | None = None,
        *,
        key: str | Callable[[], str | None] | None = None,
        store: redis.Redis | str | None = None,
        name: str = "default",
        prefix: str = "ragprod:ratelimit:",
        clock: Callable[[], float] | None = None,
        retry_interval: float = 1.0,
        metrics: RagMetrics | None = None,
    ) -> None:
        burst = max(1.0, float(rate)) if burst is None else float(burst)
        problems = []
        if not rate > 0:
            problems.append("RateLimiter rate must be positive")
        if not burst > 0:
            problems.append("RateLimiter burst must be positive")
        if problems:
            raise ConfigurationError(problems)
        self.rate = float(rate)
        self.burst = burst
        self.key = key
        self.name = name
        self.prefix = prefix
        self.retry_interval = retry_interval
        if isinstance(store, str):
            store = redis.Redis.from_url(store, socket_timeout=0.25, socket_connect_timeout=0.25)
        self.store = store
        self._script = store.register_script(_LUA) if store is not None else None
        self._clock = clock or (time.time if store is not None else time.monotonic)
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._degraded_until: float | None = None
        self.bind_metrics(metrics or RagMetrics())

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count refusals on ``metrics`` from now on."""
        self.signals = Signals(metrics)
        self._m_limited = self.signals.rate_limited.labels(upstream=self.name)

    def _key(self, key: str | None) -> str:
        if key is None:
            k = self.key
            key = k() if callable(k) else k
        return key or ""

    def _local(self, key: str, tokens: float, now: float) -> float:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = [self.burst, now]
                if len(self._buckets) > _MAX_LOCAL_KEYS:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
                if now > bucket[1]:
                    bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
                    bucket[1] = now
            if bucket[0] >= tokens:
                bucket[0] -= tokens
                return 0.0
            return (tokens - bucket[0]) / self.rate

    def _remote(self, key: str, tokens: float, now: float) -> float | None:
        if self._script is None:
            return None
        if self._degraded_until is not None and now < self._degraded_until:
            return None
        digest = hashlib.blake2b(key.encode(), digest_size=12).hexdigest()
        try:
            wait = self._script(
                keys=[f"{self.prefix}{self.name}:{digest}"],
                args=[repr(self.rate), repr(self.burst), repr(tokens), repr(now)],
            )
        except (redis.RedisError, OSError) as exc:
            if self._degraded_until is None:
                self.signals.store_degraded.labels(upstream=self.name).set(1)
            self._degraded_until = now + self.retry_interval
            self.signals.store_errors.labels(upstream=self.name).inc()
            log_throttled(
                "ragprod.resilience.store_unavailable", self.name, limiter=self.name,
                error=type(exc).__name__, fallback="local_buckets",
            )  # fmt: skip
            return None
        if self._degraded_until is not None:
            self._degraded_until = None
            self.signals.store_degraded.labels(upstream=self.name).set(0)
            log.info("ragprod.resilience.store_recovered", limiter=self.name)
        return float(wait)

    def try_acquire(self, key: str | None = None, tokens: float = 1.0) -> float:
        """Take ``tokens`` if available: returns 0.0, else the seconds to wait (nothing taken)."""
        k = self._key(key)
        now = self._clock()
        if self._script is None:
            return self._local(k, tokens, now)
        wait = self._remote(k, tokens, now)
        return self._local(k, tokens, now) if wait is None else wait

    def acquire(self, key: str | None = None, tokens: float = 1.0) -> None:
        """Take ``tokens`` or raise ``RateLimitedError`` with ``retry_after``."""
        wait = self.try_acquire(key, tokens)
        if wait > 0:
            self._m_limited.inc()
            fields = {"name": self.name, "retry_after": round(wait, 4)}
            log_throttled("ragprod.resilience.rate_limited", self.name, 1.0, "info", **fields)
            span_event("ragprod.resilience.rate_limited", fields)
            raise RateLimitedError(self.name, retry_after=wait)

    def __repr__(self) -> str:
        where = "redis" if self.store is not None else "local"
        return f"RateLimiter(rate={self.rate}, burst={self.burst}, {where})"
