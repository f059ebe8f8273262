"""``HealthCheck``: liveness and readiness probes with per-dependency status.

``live()`` answers "is this process able to serve at all?" and touches no
dependency (a Redis outage must not make Kubernetes restart every pod).
``ready()`` answers "should traffic come here now?": it probes every
dependency in parallel, each bounded by ``timeout`` seconds, and reports each
one's status and latency. Critical probes (Redis the index lives in, the
database, the manifest) decide readiness; informational ones (an open circuit
breaker, a cache tier that degrades to bypass) make the result ``"degraded"``
but keep the pod in rotation.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import structlog

from ragprod.metrics import RagMetrics
from ragprod.preflight._probes import (
    ProbeResult,
    aping_redis,
    ping_postgres,
    ping_redis,
    run_probe,
)

__all__ = ["HealthCheck", "HealthStatus", "Probe"]

_log = structlog.get_logger("ragprod.health")

#: Text embedded by the embedding probe.
PROBE_TEXT = "ragprod readiness probe"


@dataclass(frozen=True, slots=True)
class Probe:
    """One dependency probe.

    Args:
        name: the key in the result (``"redis"``, ``"postgres"`` ...).
        check: a blocking callable that raises on failure; it must bound its own
            I/O by the timeout it is built with (ragprod's probes do).
        acheck: an async variant; without one, ``aready()`` runs ``check`` in a
            thread.
        critical: whether a failure makes the service not ready. Non-critical
            failures give ``"degraded"``.
    """

    name: str
    check: Callable[[], object]
    acheck: Callable[[], Awaitable[object]] | None = None
    critical: bool = True


@dataclass(frozen=True, slots=True)
class HealthStatus:
    """The result of ``live()`` / ``ready()``.

    Attributes:
        status: ``"ok"``, ``"degraded"`` (only non-critical probes failed) or
            ``"fail"``.
        checks: per probe, a :class:`~ragprod.preflight._probes.ProbeResult`.
        duration_ms: wall time of the whole run.
    """

    status: str
    checks: Mapping[str, ProbeResult] = field(default_factory=dict)
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        """True unless a critical probe failed."""
        return self.status != "fail"

    @property
    def http_status(self) -> int:
        """200 when ok or degraded, 503 when a critical probe failed."""
        return 200 if self.ok else 503

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: ``{"status", "duration_ms", "checks": {name: {...}}}``."""
        return {
            "status": self.status,
            "duration_ms": round(self.duration_ms, 3),
            "checks": {name: r.to_dict() for name, r in self.checks.items()},
        }


def _breaker_state(breaker: Any) -> str:
    state = getattr(breaker, "state", None)
    if callable(state):
        state = state()
    state = getattr(state, "value", state)
    return str(state).lower() if state is not None else "unknown"


class HealthCheck:
    """Liveness and readiness probes for a LlamaIndex service.

    Args:
        redis: Redis URLs or clients to PING (critical).
        cache_redis: Redis URLs or clients of cache tiers (non-critical: a
            cache that is down degrades to bypass).
        postgres: PostgreSQL URLs to ``SELECT 1`` (critical; needs psycopg).
        embed_model: an embedding model to call with a short text (critical).
        breakers: circuit breakers to report (duck-typed ``name`` and ``state``;
            ``"open"`` makes the result degraded, never failed).
        keyring: a keyring whose primary key must exist (duck-typed
            ``key_ids``/``primary_id``).
        index: the served index, or a zero-argument callable returning it (or
            None while loading); readiness fails until it is loaded.
        manifest: with ``index``, the build manifest the index must match
            (checked once, then cached; see ``write_manifest``).
        probes: more probes: name -> blocking callable raising on failure, or
            :class:`Probe` objects.
        timeout: seconds each probe may take.
        metrics: where to export ``ragprod_health_probe_up{probe}`` (1 or 0) and
            ``ragprod_health_probe_latency_seconds{probe}``; none by default.
        clock: timer for latencies (inject a fake one in tests).

    A probe whose status changes is logged once, as ``ragprod.health.probe_changed``
    (probe name, old and new status, error class), not on every call.

    Example:
        >>> from ragprod.preflight import HealthCheck
        >>> health = HealthCheck(probes={"disk": lambda: None})
        >>> health.ready().to_dict()["checks"]["disk"]["status"]
        'ok'
        >>> health.live().status
        'ok'
    """

    def __init__(
        self,
        *,
        redis: Iterable[Any] = (),
        cache_redis: Iterable[Any] = (),
        postgres: Iterable[str] = (),
        embed_model: Any = None,
        breakers: Iterable[Any] = (),
        keyring: Any = None,
        index: Any = None,
        manifest: Any = None,
        probes: Mapping[str, Callable[[], object]] | Iterable[Probe] = (),
        timeout: float = 1.0,
        metrics: RagMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.timeout = timeout
        self._last: dict[str, str] = {}
        self._up = self._latency = None
        if metrics is not None:
            self._up = metrics.gauge(
                "ragprod_health_probe_up", "1 when the readiness probe passed.", ("probe",)
            )
            self._latency = metrics.histogram(
                "ragprod_health_probe_latency_seconds", "Readiness probe latency.", ("probe",)
            )
        self._clock = clock
        self._index = index
        self._manifest = manifest
        self._manifest_ok: bool | None = None
        self._probes: list[Probe] = []
        self._pool: ThreadPoolExecutor | None = None
        for i, target in enumerate(redis):
            self._add_redis(f"redis{'' if i == 0 else i}", target, critical=True)
        for i, target in enumerate(cache_redis):
            self._add_redis(f"cache_redis{'' if i == 0 else i}", target, critical=False)
        for i, url in enumerate(postgres):
            self.add(
                f"postgres{'' if i == 0 else i}", functools.partial(ping_postgres, url, timeout)
            )
        if embed_model is not None:
            self.add(
                "embedding",
                functools.partial(embed_model.get_text_embedding, PROBE_TEXT),
                acheck=functools.partial(embed_model.aget_text_embedding, PROBE_TEXT),
            )
        for breaker in breakers:
            name = str(getattr(breaker, "name", None) or f"breaker{len(self._probes)}")
            self.add(
                f"breaker:{name}", functools.partial(self._check_breaker, breaker), critical=False
            )
        if keyring is not None:
            self.add("keyring", functools.partial(self._check_keyring, keyring))
        if index is not None:
            self.add("index", self._check_index)
        if manifest is not None:
            self.add("manifest", self._check_manifest)
        items = probes.items() if isinstance(probes, Mapping) else ((p.name, p) for p in probes)
        for name, probe in items:
            if isinstance(probe, Probe):
                self._probes.append(probe)
            else:
                self.add(name, probe)

    def _add_redis(self, name: str, target: Any, *, critical: bool) -> None:
        self.add(
            name,
            functools.partial(ping_redis, target, self.timeout),
            acheck=functools.partial(aping_redis, target, self.timeout),
            critical=critical,
        )

    def add(
        self,
        name: str,
        check: Callable[[], object],
        *,
        acheck: Callable[[], Awaitable[object]] | None = None,
        critical: bool = True,
    ) -> None:
        """Add a probe: ``check()`` raises on failure; names must be unique."""
        if any(p.name == name for p in self._probes):
            raise ValueError(f"a probe named {name!r} exists already")
        self._probes.append(Probe(name, check, acheck, critical))

    @property
    def probe_names(self) -> tuple[str, ...]:
        """The names of the readiness probes, in order."""
        return tuple(p.name for p in self._probes)

    # -- built-in probe bodies ---------------------------------------------

    @staticmethod
    def _check_breaker(breaker: Any) -> None:
        state = _breaker_state(breaker)
        if state in ("open", "forced_open"):  # half-open is recovering: reported ok
            raise RuntimeError("circuit open")

    @staticmethod
    def _check_keyring(keyring: Any) -> None:
        ids = tuple(getattr(keyring, "key_ids", ()) or ())
        if not ids or getattr(keyring, "primary_id", None) not in ids:
            raise LookupError("no usable primary key")

    def _resolve_index(self) -> Any:
        index = self._index
        if callable(index) and not hasattr(index, "as_query_engine"):
            index = index()
        return index

    def _check_index(self) -> None:
        if self._resolve_index() is None:
            raise LookupError("index not loaded")

    def _check_manifest(self) -> None:
        if self._manifest_ok is None:
            from ragprod.preflight._validate import validate

            index = self._resolve_index()
            if index is None:
                raise LookupError("index not loaded")
            report = validate(
                index=index, manifest=self._manifest, only=["manifest"], timeout=self.timeout
            )
            self._manifest_ok = report.ok
        if not self._manifest_ok:
            raise ValueError("index manifest mismatch")

    # -- drivers -----------------------------------------------------------

    def _observe(self, results: list[ProbeResult]) -> None:
        for r in results:
            old = self._last.get(r.name)
            if old != r.status:
                self._last[r.name] = r.status
                if old is not None or not r.ok:
                    log = _log.info if r.ok else _log.warning
                    log("ragprod.health.probe_changed", probe=r.name, old=old, new=r.status,
                        error=r.detail or None)  # fmt: skip
            if self._up is not None and self._latency is not None:
                self._up.labels(probe=r.name).set(1 if r.ok else 0)
                self._latency.labels(probe=r.name).observe(r.latency_ms / 1000)

    def _summarise(self, results: list[ProbeResult], start: float) -> HealthStatus:
        self._observe(results)
        status = "ok"
        for probe, result in zip(self._probes, results, strict=True):
            if not result.ok:
                if probe.critical:
                    status = "fail"
                    break
                status = "degraded"
        return HealthStatus(
            status=status,
            checks={r.name: r for r in results},
            duration_ms=(self._clock() - start) * 1000,
        )

    def live(self) -> HealthStatus:
        """Liveness: the process answers. Touches no dependency."""
        return HealthStatus(status="ok")

    async def alive(self) -> HealthStatus:
        """Async :meth:`live`."""
        return self.live()

    def ready(self) -> HealthStatus:
        """Readiness: every probe in parallel threads, each bounded by ``timeout``."""
        start = self._clock()
        if not self._probes:
            return HealthStatus(status="ok")
        if self._pool is None:
            # kept across calls: starting threads costs more than a loopback PING
            self._pool = ThreadPoolExecutor(
                max_workers=max(4, 2 * len(self._probes)), thread_name_prefix="ragprod-probe"
            )
        futures = [self._pool.submit(run_probe, p.name, p.check, self._clock) for p in self._probes]
        results = []
        deadline = time.monotonic() + self.timeout + 0.25
        for probe, future in zip(self._probes, futures, strict=True):
            try:
                remaining = max(0.0, deadline - time.monotonic())
                results.append(future.result(timeout=remaining))
            except FutureTimeout:
                results.append(ProbeResult(probe.name, "timeout", self.timeout * 1000, "deadline"))
        return self._summarise(results, start)

    def close(self) -> None:
        """Stop the probe threads (probes still running finish in the background)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    async def aready(self) -> HealthStatus:
        """Async :meth:`ready`: probes run concurrently on the event loop."""
        start = self._clock()
        results = await asyncio.gather(*(self._arun(p) for p in self._probes))
        return self._summarise(list(results), start)

    async def _arun(self, probe: Probe) -> ProbeResult:
        start = self._clock()

        async def call() -> object:
            if probe.acheck is not None:
                return await probe.acheck()
            return await asyncio.to_thread(probe.check)

        try:
            await asyncio.wait_for(call(), self.timeout + 0.25)
        except (asyncio.TimeoutError, TimeoutError) as exc:
            return ProbeResult(probe.name, "timeout", (self._clock() - start) * 1000,
                               type(exc).__name__)  # fmt: skip
        except Exception as exc:
            status = "timeout" if "Timeout" in type(exc).__name__ else "fail"
            return ProbeResult(probe.name, status, (self._clock() - start) * 1000,
                               type(exc).__name__)  # fmt: skip
        return ProbeResult(probe.name, "ok", (self._clock() - start) * 1000)

    # -- web framework helpers ---------------------------------------------

    def routes(self, *, live_path: str = "/health", ready_path: str = "/ready") -> list[Any]:
        """Starlette ``Route`` objects for liveness and readiness (FastAPI accepts them too).

        Example:
            >>> from starlette.applications import Starlette
            >>> app = Starlette(routes=HealthCheck().routes())
        """
        from starlette.requests import Request
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def live(request: Request) -> JSONResponse:
            status = await self.alive()
            return JSONResponse(status.to_dict(), status_code=status.http_status)

        async def ready(request: Request) -> JSONResponse:
            status = await self.aready()
            return JSONResponse(status.to_dict(), status_code=status.http_status)

        return [
            Route(live_path, live, methods=["GET"], name="ragprod_live"),
            Route(ready_path, ready, methods=["GET"], name="ragprod_ready"),
        ]

    def __repr__(self) -> str:
        return f"HealthCheck(probes={list(self.probe_names)}, timeout={self.timeout:g})"
