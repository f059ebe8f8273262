"""A production-shaped FastAPI service around a ``ragprod.harden()``-ed LlamaIndex engine.

Routes:

- ``POST /query`` (``X-API-Key`` required): ``{"query": "...", "stream": false}`` ->
  ``{"answer", "sources", "cached", "trace_id", "tenant"}``; with ``"stream": true``
  or ``Accept: text/event-stream`` the answer streams as server-sent events
  (``meta``, ``token``..., then ``done`` or ``error``).
- ``GET /health``: liveness, always 200 while the process serves.
- ``GET /ready``: readiness, 200 or 503 with one entry per dependency.
- ``GET /metrics``: Prometheus text: every ``ragprod_*`` collector of the engines
  plus the service's own ``ragprod_service_*`` HTTP metrics.
- ``POST /admin/faults``: only with ``RAGPROD_FAULT_INJECTION=1`` (soak and tests).

Failures never surface as a traceback: see ``_errors.py`` for the mapping
(400 with the guard's reason, 429/503 with ``Retry-After``).

Run it: ``python -m examples.fastapi_service`` or
``uvicorn examples.fastapi_service.app:app`` (``app`` is built on first access,
from the ``RAGPROD_*`` environment).
"""

from __future__ import annotations

import asyncio
import hmac
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from examples.fastapi_service._errors import DeadlineExceeded, Failure, classify
from examples.fastapi_service._faults import MODES
from examples.fastapi_service._observe import CacheHitLog, HttpMetrics, make_tracer_provider
from examples.fastapi_service._probes import Readiness
from examples.fastapi_service._sse import answer_events, sources_of
from examples.fastapi_service._stack import build_stack, layer_available
from examples.fastapi_service.settings import ServiceSettings
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.propagate import extract
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, ValidationError

from ragprod.metrics import RagMetrics

__all__ = ["QueryRequest", "create_app"]

_log = structlog.get_logger("ragprod.service")


class QueryRequest(BaseModel):
    """The body of ``POST /query``."""

    model_config = ConfigDict(extra="forbid")

    query: StrictStr
    stream: StrictBool = False


class FaultRequest(BaseModel):
    """The body of ``POST /admin/faults``."""

    model_config = ConfigDict(extra="forbid")

    mode: StrictStr
    duration: float | None = None
    delay: float = 1.0


def _json(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _failure_response(failure: Failure, trace_id: str | None = None) -> JSONResponse:
    return _json(failure.status, failure.body(trace_id), failure.headers())


class _Auth:
    """API keys per tenant, compared in constant time."""

    def __init__(self, settings: ServiceSettings, metrics: RagMetrics) -> None:
        self._keys = [
            (tenant, key.get_secret_value().encode()) for tenant, key in settings.tenants.items()
        ]
        self._failures = metrics.counter(
            "ragprod_service_auth_failures_total", "Rejected API keys.", ("reason",)
        )

    def tenant(self, request: Request) -> str | JSONResponse:
        """The caller's tenant, or the 401 to answer."""
        presented = request.headers.get("x-api-key")
        if not presented:
            self._failures.labels(reason="missing").inc()
            return _json(
                401,
                {"error": "unauthorized", "reason": "missing_api_key"},
                {"WWW-Authenticate": "ApiKey"},
            )
        candidate = presented.encode("utf-8", "surrogateescape")
        found: str | None = None
        for tenant, key in self._keys:  # no early exit: time does not depend on the match
            if hmac.compare_digest(key, candidate):
                found = tenant
        if found is None:
            self._failures.labels(reason="invalid").inc()
            return _json(
                401,
                {"error": "unauthorized", "reason": "invalid_api_key"},
                {"WWW-Authenticate": "ApiKey"},
            )
        return found


def create_app(settings: ServiceSettings | None = None, *, setup_logging: bool = True) -> FastAPI:
    """Build the service from ``settings`` (default: read ``RAGPROD_*`` now).

    The index and engines are built during startup (the lifespan), so a
    replica only accepts traffic once it can answer.

    Args:
        settings: the configuration; ``ServiceSettings()`` reads the environment.
        setup_logging: configure structlog JSON logs (global) via
            ``ragprod.logging.configure_logging`` when that layer is installed.

    Raises:
        ragprod.ConfigurationError: no tenants are configured.
        pydantic.ValidationError: an environment variable is invalid.
    """
    from ragprod.errors import ConfigurationError

    settings = settings if settings is not None else ServiceSettings()
    if not settings.tenants:
        raise ConfigurationError(["RAGPROD_TENANTS is empty: configure at least one API key"])
    if setup_logging and layer_available("logging"):
        from ragprod.logging import configure_logging

        configure_logging(json=settings.log_json, level=settings.log_level)
    metrics = RagMetrics()
    hits = CacheHitLog()
    provider = make_tracer_provider(settings.service_name, hits)
    tracer = provider.get_tracer("examples.fastapi_service")
    auth = _Auth(settings, metrics)
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        stack = await asyncio.to_thread(build_stack, settings, metrics, provider)
        bridged = settings.tracing and layer_available("tracing")
        if bridged:  # LlamaIndex's own retrieval/LLM spans, token and cost metrics
            from ragprod.tracing import instrument

            instrument(tracer_provider=provider, metrics=metrics)
        state["stack"] = stack
        state["readiness"] = Readiness(stack)
        _log.info(
            "ragprod.service.started",
            tenants=len(stack.tenants),
            layers=stack.layers,
            missing=stack.missing,
            fault_injection=settings.fault_injection,
            preflight_checks=len(getattr(stack.extras.get("preflight"), "checks_run", ())),
        )
        try:
            yield
        finally:
            if bridged:
                from ragprod.tracing import uninstrument

                uninstrument()
            stack.close()
            provider.shutdown()
            _log.info("ragprod.service.stopped")

    app = FastAPI(title=settings.service_name, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.state.settings = settings
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _json(400, {"error": "bad_request", "reason": "invalid_body"})

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        _log.error("ragprod.service.unhandled", error_type=type(exc).__name__)
        return _json(500, {"error": "internal_error", "reason": "internal_error"})

    @app.get("/health")
    async def health() -> JSONResponse:
        return _json(200, {"status": "ok"})

    @app.get("/ready")
    async def ready() -> JSONResponse:
        readiness = state.get("readiness")
        if readiness is None:
            return _json(503, {"status": "fail", "checks": {}, "reason": "starting"})
        code, body = await readiness.check()
        return _json(code, body)

    @app.get("/metrics")
    async def metrics_page() -> PlainTextResponse:
        registry = metrics.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            for _ in registry.collect():  # flushes layers that buffer counts until a scrape
                pass
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/query", response_model=None)
    async def query(request: Request) -> JSONResponse | StreamingResponse:
        stack = state["stack"]
        tenant = auth.tenant(request)
        if isinstance(tenant, JSONResponse):
            return tenant
        raw = await _read_body(request, settings.max_body_bytes)
        if raw is None:
            return _json(413, {"error": "bad_request", "reason": "body_too_large"})
        try:
            body = QueryRequest.model_validate_json(raw)
        except ValidationError:
            return _json(400, {"error": "bad_request", "reason": "invalid_body"})
        wants_stream = body.stream or "text/event-stream" in request.headers.get("accept", "")
        engines = stack.tenants[tenant]
        engine = engines.stream if wants_stream else engines.query
        span = tracer.start_span(
            "POST /query",
            context=extract(request.headers),
            kind=trace.SpanKind.SERVER,
            attributes={"ragprod.tenant": tenant, "ragprod.stream": wants_stream},
        )
        span_context = span.get_span_context()
        trace_id = format(span_context.trace_id, "032x")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.request_timeout
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            try:
                response = await asyncio.wait_for(
                    engine.aquery(body.query), settings.request_timeout
                )
            except (TimeoutError, asyncio.TimeoutError) as exc:
                if loop.time() >= deadline:
                    raise DeadlineExceeded("request deadline exceeded") from exc
                raise
        except Exception as exc:
            failure = classify(exc)
            _log_failure(failure, exc, tenant, trace_id)
            span.set_attribute("http.response.status_code", failure.status)
            span.set_status(trace.StatusCode.ERROR, failure.reason)
            span.end()
            return _failure_response(failure, trace_id)
        finally:
            otel_context.detach(token)
        if wants_stream:
            events = answer_events(
                response,
                span=span,
                tenant=tenant,
                trace_id=trace_id,
                deadline=deadline,
                hits=hits,
                on_failure=_log_failure,
            )
            return StreamingResponse(
                events,
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        cached = hits.pop(span)
        span.set_attribute("http.response.status_code", 200)
        span.end()
        return _json(
            200,
            {
                "answer": str(getattr(response, "response", "") or ""),
                "sources": sources_of(response),
                "cached": cached,
                "trace_id": trace_id,
                "tenant": tenant,
            },
        )

    if settings.fault_injection:

        @app.get("/admin/faults")
        async def faults_state(request: Request) -> JSONResponse:
            tenant = auth.tenant(request)
            if isinstance(tenant, JSONResponse):
                return tenant
            faults = state["stack"].faults
            assert faults is not None
            return _json(200, faults.state())

        @app.post("/admin/faults")
        async def set_faults(request: Request) -> JSONResponse:
            tenant = auth.tenant(request)
            if isinstance(tenant, JSONResponse):
                return tenant
            try:
                fault = FaultRequest.model_validate_json(await request.body())
                faults = state["stack"].faults
                assert faults is not None
                faults.set(fault.mode, duration=fault.duration, delay=fault.delay)
            except (ValidationError, ValueError):
                return _json(
                    400, {"error": "bad_request", "reason": "invalid_body", "modes": list(MODES)}
                )
            _log.warning("ragprod.service.fault_set", mode=fault.mode, duration=fault.duration)
            return _json(200, faults.state())

    return app


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` once it exceeds ``limit`` bytes (chunked bodies too)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    parts, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        parts.append(chunk)
    return b"".join(parts)


def _log_failure(failure: Failure, exc: BaseException, tenant: str, trace_id: str) -> None:
    fields = {
        "status": failure.status,
        "reason": failure.reason,
        "tenant": tenant,
        "error_type": type(exc).__name__,
        "trace_id": trace_id,
    }
    if failure.handled:
        _log.info("ragprod.service.query_failed", **fields)
    else:
        _log.error("ragprod.service.query_crashed", **fields)


_app: FastAPI | None = None


def __getattr__(name: str) -> Any:
    """``app``: the service built from the environment, on first access (for uvicorn)."""
    global _app
    if name == "app":
        if _app is None:
            _app = create_app()
        return _app
    raise AttributeError(name)
