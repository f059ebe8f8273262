"""The shared tier: Redis with short timeouts and a breaker, never raising to callers."""

from __future__ import annotations

import asyncio
import inspect
import random as _random
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final

import redis
import redis.asyncio as aredis
import structlog
from redis.backoff import NoBackoff

from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics

__all__ = ["RedisCache"]

_log = structlog.get_logger("ragprod.cache")

# What a broken, slow or misbehaving Redis can raise through redis-py.
_REDIS_ERRORS: Final = (redis.RedisError, OSError, asyncio.TimeoutError, EOFError)
_FAILED: Final = object()
_UNLOCK: Final = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


class _Breaker:
    """Skip Redis for ``cooldown`` seconds after a failure, then let one probe through.

    The closed path (Redis healthy) is one attribute read. Transitions are
    logged: ``ragprod.cache.redis_unavailable`` at most once per
    ``log_interval`` and ``ragprod.cache.redis_recovered`` when a probe succeeds.
    """

    def __init__(
        self, cooldown: float, log_interval: float, clock: Callable[[], float], target: str
    ) -> None:
        self.cooldown = cooldown
        self.log_interval = log_interval
        self.clock = clock
        self.target = target
        self.open_until: float | None = None
        self._probing = False
        self._last_log: float | None = None
        self._lock = threading.Lock()
        self.on_change: Callable[[bool], None] | None = None

    def allow(self) -> bool:
        if self.open_until is None:
            return True
        if self.clock() < self.open_until:
            return False
        with self._lock:
            if self._probing:
                return False
            self._probing = True
            return True

    def success(self) -> None:
        if self.open_until is None:
            return
        with self._lock:
            was_open, self.open_until, self._probing = self.open_until is not None, None, False
        if was_open:
            _log.info("ragprod.cache.redis_recovered", target=self.target)
            if self.on_change is not None:
                self.on_change(True)

    def failure(self, op: str, exc: BaseException) -> None:
        now = self.clock()
        with self._lock:
            newly = self.open_until is None
            self.open_until = now + self.cooldown
            self._probing = False
            should_log = self._last_log is None or now - self._last_log >= self.log_interval
            if should_log:
                self._last_log = now
        if should_log:
            _log.warning(
                "ragprod.cache.redis_unavailable",
                target=self.target,
                op=op,
                error=type(exc).__name__,
                cooldown_s=self.cooldown,
            )
        if newly and self.on_change is not None:
            self.on_change(False)


def _is_async_client(client: Any) -> bool:
    if isinstance(client, (aredis.Redis, aredis.RedisCluster)):
        return True
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def _is_cluster(client: Any) -> bool:
    return hasattr(client, "mget_nonatomic")


class RedisCache:
    """L2: values in Redis, shared by every process; a dead Redis is bypassed, not raised.

    Stores the bytes that :class:`TieredCache` encodes (never pickle) under
    ``<prefix>:v:<key>`` with a TTL plus random jitter (so entries written
    together do not expire together), and namespace generations under
    ``<prefix>:gen:<namespace>``. Every operation swallows Redis errors: a
    failed read is a miss, a failed write is skipped, both counted in
    ``ragprod_cache_redis_errors_total{op,error}``. After a failure Redis is
    skipped for ``cooldown`` seconds (counted in
    ``ragprod_cache_redis_bypassed_total{op}``), then one call probes it and
    the cache recovers by itself. A hung Redis costs at most ``socket_timeout``
    once per cooldown.

    Args:
        client_or_url: a ``redis://`` / ``rediss://`` / ``unix://`` URL (sync and
            asyncio clients are created with the timeouts below and no
            retries), or a ready client: ``redis.Redis``, ``redis.asyncio.Redis``,
            a Sentinel ``master_for(...)`` client or a ``RedisCluster`` (sync or
            asyncio). Configure timeouts on clients you pass yourself.
        prefix: the key prefix (keep one per application and environment).
        ttl: seconds an entry lives in Redis.
        ttl_jitter: each TTL is stretched by up to this fraction, at random.
        socket_timeout: connect and read timeout for URL-built clients, seconds.
        cooldown: seconds Redis is skipped after a failure.
        aclient: an asyncio client to pair with a sync ``client_or_url``.
        max_value_bytes: larger values are not written (and not read).
        max_connections: connections per event loop for URL-built asyncio clients
            (a burst queues for one, up to ``pool_timeout`` seconds).
        pool_timeout: the longest an async call waits for a free connection.
        log_interval: the least seconds between two ``redis_unavailable`` logs.
        clock, random: injectable time and randomness.
        metrics: where to count (a private registry by default).

    With only a sync client, async calls run it in a worker thread; with only
    an asyncio client, sync calls bypass Redis.

    Raises:
        ConfigurationError: a non-positive ``ttl`` or ``socket_timeout``, a
            negative ``cooldown`` or ``ttl_jitter`` outside [0, 1].

    Example:
        >>> from structlog.testing import capture_logs
        >>> from ragprod.cache import RedisCache
        >>> l2 = RedisCache("redis://127.0.0.1:1/0", socket_timeout=0.05)  # nothing listens
        >>> with capture_logs() as logs:
        ...     missed = l2.get("k")
        >>> missed is None, l2.available, logs[0]["event"]  # a miss, not an exception
        (True, False, 'ragprod.cache.redis_unavailable')
    """

    def __init__(
        self,
        client_or_url: Any,
        *,
        prefix: str = "ragprod",
        ttl: float = 3600.0,
        ttl_jitter: float = 0.1,
        socket_timeout: float = 0.05,
        cooldown: float = 0.5,
        aclient: Any = None,
        max_value_bytes: int = 1 << 20,
        max_connections: int = 32,
        pool_timeout: float = 1.0,
        log_interval: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        metrics: RagMetrics | None = None,
    ) -> None:
        checks = {
            "RedisCache ttl must be positive": ttl <= 0,
            "RedisCache ttl_jitter must be between 0 and 1": not 0 <= ttl_jitter <= 1,
            "RedisCache socket_timeout must be positive": socket_timeout <= 0,
            "RedisCache cooldown must not be negative": cooldown < 0,
        }
        problems = [problem for problem, failed in checks.items() if failed]
        if problems:
            raise ConfigurationError(problems)
        self.prefix = prefix
        self.ttl = float(ttl)
        self.ttl_jitter = ttl_jitter
        self.socket_timeout = socket_timeout
        self.max_value_bytes = max_value_bytes
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout
        self._random = random
        self._url: str | None = None
        self._client: Any = None
        self._aclient: Any = aclient
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        if isinstance(client_or_url, str):
            self._url = client_or_url
            self._client = redis.Redis.from_url(client_or_url, **self._client_options())
            target = client_or_url.rsplit("@", 1)[-1]  # never log credentials
        elif _is_async_client(client_or_url):
            self._aclient = client_or_url
            target = type(client_or_url).__name__
        else:
            self._client = client_or_url
            target = type(client_or_url).__name__
        self.breaker = _Breaker(cooldown, log_interval, clock, target)
        self.breaker.on_change = self._on_change
        self.bind_metrics(metrics or RagMetrics())

    def _client_options(self) -> dict[str, Any]:
        return {
            "socket_timeout": self.socket_timeout,
            "socket_connect_timeout": self.socket_timeout,
            "retry": redis.retry.Retry(NoBackoff(), 0),
            "health_check_interval": 0,
        }

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count errors and bypasses on ``metrics`` from now on."""
        self.metrics = metrics
        self._errors = metrics.counter(
            "ragprod_cache_redis_errors_total",
            "Redis operations of the cache that failed (the cache bypassed Redis).",
            ("op", "error"),
        )
        self._bypassed = metrics.counter(
            "ragprod_cache_redis_bypassed_total",
            "Redis operations skipped because the cache's Redis breaker was open.",
            ("op",),
        )
        self._up = metrics.gauge(
            "ragprod_cache_redis_up", "1 while the cache uses Redis, 0 while it bypasses it."
        )
        self._up.set(1 if self.breaker.open_until is None else 0)

    def _on_change(self, up: bool) -> None:
        self._up.set(1 if up else 0)

    # -- keys ------------------------------------------------------------------

    def value_key(self, key: str) -> str:
        """The Redis key of cache key ``key``."""
        return f"{self.prefix}:v:{key}"

    def generation_key(self, namespace: str) -> str:
        """The Redis key holding ``namespace``'s generation counter."""
        return f"{self.prefix}:gen:{namespace}"

    def _px(self, ttl: float | None) -> int:
        base = self.ttl if ttl is None else float(ttl)
        return max(1, int(base * 1000 * (1 + self.ttl_jitter * self._random())))

    # -- guarded execution -------------------------------------------------------

    def _fail(self, op: str, exc: BaseException) -> None:
        exhausted = isinstance(exc, redis.exceptions.MaxConnectionsError) or (
            "No connection available" in str(exc)
        )
        error = "PoolExhausted" if exhausted else type(exc).__name__
        self._errors.labels(op=op, error=error).inc()
        # A command error or a busy pool says nothing about Redis's health.
        if not exhausted and not isinstance(exc, redis.ResponseError):
            self.breaker.failure(op, exc)

    def _run(self, op: str, call: Callable[[Any], Any], default: Any) -> Any:
        client = self._client
        if client is None or not self.breaker.allow():
            self._bypassed.labels(op=op).inc()
            return default
        try:
            result = call(client)
        except _REDIS_ERRORS as exc:
            self._fail(op, exc)
            return default
        self.breaker.success()
        return result

    def _async_client(self) -> Any:
        if self._aclient is not None:
            return self._aclient
        if self._url is None:
            return None
        loop = asyncio.get_running_loop()
        client = self._aclients.get(loop)
        if client is None:
            options = {**self._client_options(), "retry": aredis.retry.Retry(NoBackoff(), 0)}
            # A blocking pool: a burst of tasks queues for a connection instead
            # of failing with "Too many connections".
            pool = aredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=self.max_connections,
                timeout=self.pool_timeout,
                **options,
            )
            client = aredis.Redis(connection_pool=pool, retry=options["retry"])
            self._aclients[loop] = client
        return client

    async def _arun(self, op: str, call: Callable[[Any], Any], default: Any) -> Any:
        if not self.breaker.allow():
            self._bypassed.labels(op=op).inc()
            return default
        try:
            client = self._async_client()
            if client is not None:
                result = await call(client)
            elif self._client is not None:
                result = await asyncio.to_thread(call, self._client)
            else:  # pragma: no cover - a RedisCache always has one client
                return default
        except _REDIS_ERRORS as exc:
            self._fail(op, exc)
            return default
        self.breaker.success()
        return result

    # -- operations (sync and async; none of them raises) ------------------------

    def get(self, key: str) -> bytes | None:
        """The bytes under ``key``, or ``None`` (absent, or Redis unavailable)."""
        return self._run("get", lambda c: c.get(self.value_key(key)), None)  # type: ignore[no-any-return]

    async def aget(self, key: str) -> bytes | None:
        """Async :meth:`get`."""
        return await self._arun("get", lambda c: c.get(self.value_key(key)), None)  # type: ignore[no-any-return]

    def _mget_call(self, keys: Sequence[str]) -> Callable[[Any], Any]:
        full = [self.value_key(k) for k in keys]
        return lambda c: c.mget_nonatomic(full) if _is_cluster(c) else c.mget(full)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """The bytes under each key in one round trip (``None`` for each miss)."""
        if not keys:
            return []
        return self._run("mget", self._mget_call(keys), None) or [None] * len(keys)

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Async :meth:`mget`."""
        if not keys:
            return []
        return await self._arun("mget", self._mget_call(keys), None) or [None] * len(keys)

    def _set_call(
        self, items: Sequence[tuple[str, bytes]], ttl: float | None
    ) -> Callable[[Any], Any] | None:
        items = [(k, v) for k, v in items if len(v) <= self.max_value_bytes]
        if not items:
            return None
        if len(items) == 1:
            (key, data), px = items[0], self._px(ttl)
            return lambda c: c.set(self.value_key(key), data, px=px)
        writes = [(self.value_key(k), v, self._px(ttl)) for k, v in items]

        def call(client: Any) -> Any:
            pipe = client.pipeline(transaction=False)
            for key, data, px in writes:
                pipe.set(key, data, px=px)
            return pipe.execute()

        return call

    def set_many(self, items: Sequence[tuple[str, bytes]], ttl: float | None = None) -> None:
        """Write several values in one pipelined round trip (oversized ones are skipped)."""
        call = self._set_call(items, ttl)
        if call is not None:
            self._run("set", call, None)

    async def aset_many(self, items: Sequence[tuple[str, bytes]], ttl: float | None = None) -> None:
        """Async :meth:`set_many`."""
        call = self._set_call(items, ttl)
        if call is not None:
            await self._arun("set", call, None)

    def set(self, key: str, data: bytes, ttl: float | None = None) -> None:
        """Write one value with ``ttl`` (default: the cache's) plus jitter."""
        self.set_many([(key, data)], ttl)

    async def aset(self, key: str, data: bytes, ttl: float | None = None) -> None:
        """Async :meth:`set`."""
        await self.aset_many([(key, data)], ttl)

    def delete(self, key: str) -> None:
        """Remove ``key`` (errors are swallowed)."""
        self._run("delete", lambda c: c.delete(self.value_key(key)), None)

    async def adelete(self, key: str) -> None:
        """Async :meth:`delete`."""
        await self._arun("delete", lambda c: c.delete(self.value_key(key)), None)

    @staticmethod
    def _as_int(raw: Any) -> int | None:
        if raw is _FAILED:
            return None
        try:
            return int(raw or 0)
        except (TypeError, ValueError):
            return None

    def get_generation(self, namespace: str) -> int | None:
        """``namespace``'s generation in Redis (0 if never bumped), ``None`` if unavailable."""
        key = self.generation_key(namespace)
        return self._as_int(self._run("generation", lambda c: c.get(key), _FAILED))

    async def aget_generation(self, namespace: str) -> int | None:
        """Async :meth:`get_generation`."""
        key = self.generation_key(namespace)
        return self._as_int(await self._arun("generation", lambda c: c.get(key), _FAILED))

    def bump_generation(self, namespace: str) -> int | None:
        """Increment ``namespace``'s generation (INCR); ``None`` if Redis is unavailable."""
        key = self.generation_key(namespace)
        return self._as_int(self._run("invalidate", lambda c: c.incr(key), _FAILED))

    async def abump_generation(self, namespace: str) -> int | None:
        """Async :meth:`bump_generation`."""
        key = self.generation_key(namespace)
        return self._as_int(await self._arun("invalidate", lambda c: c.incr(key), _FAILED))

    # -- cross-process single-flight locks (SET NX PX) ---------------------------

    def lock_key(self, key: str) -> str:
        """The Redis key of the computation lock for cache key ``key``."""
        return f"{self.prefix}:lock:{key}"

    def acquire_lock(self, key: str, token: str, ttl: float) -> bool | None:
        """Try to take ``key``'s lock for ``ttl`` seconds; ``None`` if Redis is unavailable."""
        lock, px = self.lock_key(key), max(1, int(ttl * 1000))
        raw = self._run("lock", lambda c: c.set(lock, token, nx=True, px=px), _FAILED)
        return None if raw is _FAILED else bool(raw)

    async def aacquire_lock(self, key: str, token: str, ttl: float) -> bool | None:
        """Async :meth:`acquire_lock`."""
        lock, px = self.lock_key(key), max(1, int(ttl * 1000))
        raw = await self._arun("lock", lambda c: c.set(lock, token, nx=True, px=px), _FAILED)
        return None if raw is _FAILED else bool(raw)

    def release_lock(self, key: str, token: str) -> None:
        """Release ``key``'s lock if ``token`` still holds it (compare-and-delete)."""
        lock = self.lock_key(key)
        self._run("unlock", lambda c: c.eval(_UNLOCK, 1, lock, token), None)

    async def arelease_lock(self, key: str, token: str) -> None:
        """Async :meth:`release_lock`."""
        lock = self.lock_key(key)
        await self._arun("unlock", lambda c: c.eval(_UNLOCK, 1, lock, token), None)

    @property
    def available(self) -> bool:
        """False while the breaker skips Redis."""
        return self.breaker.open_until is None

    def close(self) -> None:
        """Close the sync client's connections (URL-built clients only)."""
        if self._url is not None and self._client is not None:
            self._client.close()

    async def aclose(self) -> None:
        """Close the running event loop's asyncio client (URL-built clients only)."""
        if self._url is None:
            return
        client = self._aclients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()

    def __repr__(self) -> str:
        return f"RedisCache(prefix={self.prefix!r}, ttl={self.ttl}, target={self.breaker.target!r})"
