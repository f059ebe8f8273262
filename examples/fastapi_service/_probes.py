"""Readiness: is this replica able to serve? Bounded probes of every dependency.

``/health`` (liveness) only says the process answers. ``/ready`` checks that
the engines are built and that Redis answers a ``PING`` within
``RAGPROD_PROBE_TIMEOUT`` seconds (a refused connection fails at once, a hung
server after the timeout, never later). It uses ``ragprod.preflight.HealthCheck``
when that is installed, else the minimal ping below; both answer
``{"status": "ok"|"degraded"|"fail", "checks": {name: {"status", "latency_ms",
"detail"?}}}``, 503 only on ``fail``. The upstream breaker's state is reported
but never fails readiness (an open breaker makes the status ``degraded``):
an open breaker is already answered by fallbacks and 503s, and pulling every
replica out of the load balancer would turn a degraded upstream into a full
outage. With ``RAGPROD_READY_REQUIRES_REDIS=false`` Redis is informational too
(the cache degrades to its L1 tier without it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio as aredis
from examples.fastapi_service._stack import Stack, layer_available

__all__ = ["Readiness", "aping_redis", "probe_redis"]


async def aping_redis(url: str, timeout: float) -> None:
    """``PING`` Redis on a fresh connection, bounded by ``timeout`` seconds overall.

    Raises:
        redis.RedisError, OSError, TimeoutError: the server did not answer.
    """
    client = aredis.Redis.from_url(
        url, socket_connect_timeout=timeout, socket_timeout=timeout, retry=None
    )
    try:
        await asyncio.wait_for(client.ping(), timeout)
    finally:
        await client.aclose()


async def probe_redis(url: str, timeout: float) -> dict[str, Any]:
    """``{"status": "ok"|"fail"|"timeout", "latency_ms": ..., "detail": <class name>}``."""
    start = time.perf_counter()
    try:
        await aping_redis(url, timeout)
    except (TimeoutError, aredis.TimeoutError) as exc:
        status, detail = "timeout", type(exc).__name__
    except Exception as exc:  # any failure is "not ready"; the class name is enough
        status, detail = "fail", type(exc).__name__
    else:
        status, detail = "ok", ""
    out: dict[str, Any] = {
        "status": status,
        "latency_ms": round((time.perf_counter() - start) * 1000, 3),
    }
    if detail:
        out["detail"] = detail
    return out


class Readiness:
    """``GET /ready`` for one stack: ``await readiness.check()`` -> ``(status, body)``."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        settings = stack.settings
        self.health: Any = None
        if layer_available("preflight"):
            from ragprod.preflight import HealthCheck

            url = settings.redis_url
            critical = settings.ready_requires_redis
            self.health = HealthCheck(
                redis=[url] if url and critical else (),
                cache_redis=[url] if url and not critical else (),
                breakers=[stack.breaker] if stack.breaker is not None else (),
                index=lambda: stack.index,
                timeout=settings.probe_timeout,
            )

    async def check(self) -> tuple[int, dict[str, Any]]:
        """Probe every dependency now."""
        if self.health is not None:
            status = await self.health.aready()
            code, body = status.http_status, status.to_dict()
        else:
            code, body = await self._fallback()
        body["layers"], body["missing_layers"] = self.stack.layers, self.stack.missing
        return code, body

    async def _fallback(self) -> tuple[int, dict[str, Any]]:
        settings, start = self.stack.settings, time.perf_counter()
        checks: dict[str, Any] = {"index": {"status": "ok", "latency_ms": 0.0}}
        status = "ok"
        if settings.redis_url:
            name = "redis" if settings.ready_requires_redis else "cache_redis"
            checks[name] = await probe_redis(settings.redis_url, settings.probe_timeout)
            if checks[name]["status"] != "ok":
                status = "fail" if settings.ready_requires_redis else "degraded"
        breaker_state = getattr(self.stack.breaker, "state", None)
        if breaker_state is not None:
            opened = str(getattr(breaker_state, "value", breaker_state)) == "open"
            checks["breaker:upstream"] = {"status": "fail" if opened else "ok", "latency_ms": 0.0}
            if opened and status == "ok":
                status = "degraded"
        duration = round((time.perf_counter() - start) * 1000, 3)
        body = {"status": status, "duration_ms": duration, "checks": checks}
        return (503 if status == "fail" else 200), body
