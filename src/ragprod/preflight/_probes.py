"""Bounded dependency probes: Redis PING, PostgreSQL ``SELECT 1``, embedding calls.

Every probe takes a ``timeout`` in seconds that bounds both the TCP connect and
each read, so a dead server (connection refused) fails fast and a hung one
(accepts, never answers) fails after ``timeout``, never later. A probe raises
on failure; :func:`run_probe` turns that into a :class:`ProbeResult`. Error
details keep only the exception class: connection strings can hold passwords.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "ProbeResult",
    "aping_redis",
    "find_redis_clients",
    "ping_postgres",
    "ping_redis",
    "redact_url",
    "run_probe",
]


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """The outcome of one probe: ``status`` is ``"ok"``, ``"fail"`` or ``"timeout"``."""

    name: str
    status: str
    latency_ms: float
    detail: str = ""

    @property
    def ok(self) -> bool:
        """Whether the probe succeeded."""
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form."""
        out: dict[str, Any] = {"status": self.status, "latency_ms": round(self.latency_ms, 3)}
        if self.detail:
            out["detail"] = self.detail
        return out


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``.

    Example:
        >>> redact_url("redis://user:hunter2@db:6379/0")
        'redis://user:***@db:6379/0'
    """
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


# redis-py >= 7 takes driver_info=None; older versions take lib_name/lib_version=None.
_NO_SETINFO: dict[str, Any] = (
    {"driver_info": None}
    if importlib.util.find_spec("redis.driver_info") is not None
    else {"lib_name": None, "lib_version": None}
)


def _probe_kwargs(timeout: float) -> dict[str, Any]:
    """Bounded timeouts; no CLIENT SETINFO round trips on connect (a probe is one PING)."""
    return {"socket_connect_timeout": timeout, "socket_timeout": timeout, **_NO_SETINFO}


def _no_retry() -> Retry:
    return Retry(NoBackoff(), 0)


def _no_aretry() -> AsyncRetry:
    return AsyncRetry(NoBackoff(), 0)


def _sync_client(target: Any, timeout: float) -> redis.Redis:
    """A fresh client with bounded timeouts, for a URL or an existing client's pool."""
    if isinstance(target, str):
        return redis.Redis.from_url(target, retry=_no_retry(), **_probe_kwargs(timeout))
    pool = target.connection_pool
    kwargs = dict(pool.connection_kwargs)
    for stale in ("retry", "lib_name", "lib_version", "driver_info"):
        kwargs.pop(stale, None)
    kwargs.update(_probe_kwargs(timeout))
    new_pool = redis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
    return redis.Redis(connection_pool=new_pool, retry=_no_retry())


def ping_redis(target: str | redis.Redis | aredis.Redis, timeout: float = 1.0) -> None:
    """PING a Redis (URL or client) on a new connection bounded by ``timeout`` seconds.

    The user's client is not used directly (its timeouts may be unbounded);
    a one-off connection with the same address and credentials is.

    Raises:
        redis.RedisError: connection refused, timed out, auth failed ...
    """
    client = _sync_client(target, timeout)
    try:
        client.ping()
    finally:
        client.close()
        client.connection_pool.disconnect()


async def aping_redis(target: str | redis.Redis | aredis.Redis, timeout: float = 1.0) -> None:
    """Async :func:`ping_redis`, bounded by ``timeout`` seconds overall."""
    if isinstance(target, str):
        client = aredis.Redis.from_url(target, retry=_no_aretry(), **_probe_kwargs(timeout))
    else:
        pool = target.connection_pool
        kwargs = dict(pool.connection_kwargs)
        for stale in ("retry", "lib_name", "lib_version", "driver_info"):
            kwargs.pop(stale, None)
        kwargs.update(_probe_kwargs(timeout))
        if isinstance(target, aredis.Redis):
            new_pool: Any = aredis.ConnectionPool(connection_class=pool.connection_class, **kwargs)
        else:
            new_pool = aredis.ConnectionPool(**kwargs)
        client = aredis.Redis(connection_pool=new_pool, retry=_no_aretry())
    try:
        await asyncio.wait_for(client.ping(), timeout)
    finally:
        await client.aclose()


def ping_postgres(url: str, timeout: float = 1.0) -> None:
    """Run ``SELECT 1`` on PostgreSQL with a connect timeout and statement timeout.

    Needs ``psycopg`` (3). ``timeout`` is rounded up to whole seconds for the
    connect timeout (libpq's unit) and bounds the statement in milliseconds.
    """
    import psycopg

    with psycopg.connect(
        url,
        connect_timeout=max(1, int(timeout + 0.999)),
        options=f"-c statement_timeout={max(1, int(timeout * 1000))}",
    ) as conn:
        conn.execute("SELECT 1")


def run_probe(name: str, fn: Callable[[], object], clock: Callable[[], float]) -> ProbeResult:
    """Call ``fn`` and time it; any exception becomes a ``"fail"`` result."""
    start = clock()
    try:
        fn()
    except (TimeoutError, redis.TimeoutError) as exc:
        return ProbeResult(name, "timeout", (clock() - start) * 1000, type(exc).__name__)
    except Exception as exc:
        return ProbeResult(name, "fail", (clock() - start) * 1000, type(exc).__name__)
    return ProbeResult(name, "ok", (clock() - start) * 1000)


_REDIS_ATTRS = ("_redis_client", "redis", "client", "_client", "_redis", "redis_client")
_NESTED_ATTRS = ("_kvstore", "_inner", "inner", "_store", "l2", "_l2", "backend", "_backend")


def find_redis_clients(obj: Any, depth: int = 3) -> Iterator[tuple[str, redis.Redis]]:
    """Redis clients reachable from ``obj`` by duck typing: ``(path, client)``.

    Looks at the attributes stores and caches commonly use (``_redis_client``
    of ``RedisKVStore``, ``client``/``redis`` of caches) and follows wrappers
    (``_kvstore``, ``_inner``, ``l2`` ...) up to ``depth`` levels. Also accepts a
    ``url``/``redis_url`` string attribute.
    """
    seen: set[int] = set()

    def walk(node: Any, path: str, level: int) -> Iterator[tuple[str, Any]]:
        if node is None or id(node) in seen or level > depth:
            return
        seen.add(id(node))
        if isinstance(node, (redis.Redis, aredis.Redis)):
            yield path, node
            return
        for attr in ("redis_url", "url"):
            value = getattr(node, attr, None)
            if isinstance(value, str) and value.startswith(("redis://", "rediss://", "unix://")):
                yield f"{path}.{attr}", value
        for attr in _REDIS_ATTRS + _NESTED_ATTRS:
            try:
                child = getattr(node, attr, None)
            except Exception:
                continue
            if child is not None and not isinstance(child, (str, bytes, int, float)):
                yield from walk(child, f"{path}.{attr}", level + 1)

    yield from walk(obj, type(obj).__name__, 0)


def monotonic() -> float:
    """The default clock of probes."""
    return time.monotonic()
