"""Build the service's engines: the demo index, hardened once per tenant.

Each ragprod layer is used only if its package is installed in this ragprod
(feature detection at startup, :func:`layer_available`); a layer that is not
there is left out and listed by ``GET /ready``, never imitated.

One ``VectorStoreIndex`` over the bundled demo corpus is shared by every
tenant. Each tenant gets its own hardened engine, named after the tenant, so
the tenant is the cache namespace (tenants never see each other's cached
answers and can be invalidated separately), the ``engine`` label of every
``ragprod_*`` metric, and the key of its own rate limiter. The cache tiers,
the breaker on the shared upstream, the guard and the PII key are shared.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from examples.fastapi_service._faults import FaultInjectingEngine, FaultSwitch
from examples.fastapi_service.settings import ServiceSettings
from llama_index.core import VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine

import ragprod
from ragprod.demo import load_corpus
from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, HashEmbedding

__all__ = ["LAYER_NAMES", "Stack", "TenantEngines", "build_stack", "layer_available"]

#: The public name each optional layer must export to count as installed.
LAYER_NAMES: dict[str, tuple[str, str]] = {
    "tracing": ("ragprod.tracing", "Tracing"),
    "logging": ("ragprod.logging", "configure_logging"),
    "cache": ("ragprod.cache", "TieredCache"),
    "resilience": ("ragprod.resilience", "Resilience"),
    "pii": ("ragprod.pii", "PIIAnonymizer"),
    "preflight": ("ragprod.preflight", "HealthCheck"),
}


def layer_available(layer: str) -> bool:
    """Whether ``layer``'s package imports and exports its public entry point.

    A package directory without its ``__init__`` (still being written) imports
    as an empty namespace package, so the check looks for the public name.
    """
    package, attribute = LAYER_NAMES[layer]
    try:
        module = importlib.import_module(package)
    except ImportError:
        return False
    return hasattr(module, attribute)


def _public(layer: str) -> Any:
    return importlib.import_module(LAYER_NAMES[layer][0])


@dataclass
class TenantEngines:
    """A tenant's two hardened engines: plain answers and token streams."""

    tenant: str
    query: BaseQueryEngine
    stream: BaseQueryEngine


@dataclass
class Stack:
    """Everything the app serves with."""

    settings: ServiceSettings
    metrics: RagMetrics
    index: VectorStoreIndex
    tenants: dict[str, TenantEngines]
    layers: list[str]
    missing: list[str]
    cache: Any = None
    breaker: Any = None
    faults: FaultSwitch | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        """Release what the stack holds (Redis connections)."""
        l2 = getattr(self.cache, "l2", None)
        close = getattr(l2, "close", None)
        if callable(close):
            close()


def _cache(settings: ServiceSettings, metrics: RagMetrics) -> Any:
    cache_mod = _public("cache")
    if settings.redis_url:
        return cache_mod.TieredCache.from_url(
            settings.redis_url,
            maxsize=settings.cache_maxsize,
            l1_ttl=settings.cache_ttl,
            prefix=settings.redis_prefix,
            ttl=settings.cache_ttl,
            metrics=metrics,
        )
    return cache_mod.TieredCache.memory(
        settings.cache_maxsize, ttl=settings.cache_ttl, metrics=metrics
    )


def _resilience(settings: ServiceSettings, tenant: str, breaker: Any) -> Any:
    """The tenant's resilience: its own rate limiter and bulkhead, the shared breaker."""
    res = _public("resilience")
    rate, burst = settings.rate_limit_of(tenant)
    return res.Resilience(
        breaker=breaker,
        retry=res.RetryPolicy(
            attempts=settings.retry_attempts,
            initial=0.05,
            maximum=0.5,
            deadline=settings.request_timeout / 2,
            name=tenant,
        ),
        timeout=settings.upstream_timeout,
        bulkhead=res.Bulkhead(settings.max_concurrent, name=tenant),
        rate_limiter=res.RateLimiter(
            rate=rate, burst=burst, name=tenant, **_shared(settings, "ratelimit")
        ),
        fallback=settings.fallback_answer,
        name=tenant,
    )


def _shared(settings: ServiceSettings, kind: str) -> dict[str, Any]:
    """``store``/``prefix`` options that put ``kind`` state in Redis, if configured."""
    if not (settings.shared_resilience and settings.redis_url):
        return {}
    return {"store": settings.redis_url, "prefix": f"{settings.redis_prefix}:{kind}:"}


def _breaker(settings: ServiceSettings) -> Any:
    """One breaker on the upstream every tenant shares."""
    res = _public("resilience")
    store = _shared(settings, "breaker").get("store")
    return res.CircuitBreaker(
        "upstream",
        store=res.RedisBreakerStore(store, prefix=f"{settings.redis_prefix}:breaker:")
        if store
        else None,
        open_duration=settings.breaker_open_seconds,
        minimum_calls=settings.breaker_minimum_calls,
        window_size=settings.breaker_window,
    )


def _preflight(index: VectorStoreIndex, tenants: dict[str, TenantEngines]) -> Any:
    """``ragprod.preflight.validate`` over the served engine: refuse to start on errors.

    Raises:
        ConfigurationError: one line per error finding (code and message).
    """
    if not layer_available("preflight") or not tenants:
        return None
    from ragprod.preflight import validate

    engine = next(iter(tenants.values())).query
    report = validate(engine=engine, index=index)
    if not report.ok:
        raise ConfigurationError([f"{f.code}: {f.message}" for f in report.errors])
    return report


def build_stack(
    settings: ServiceSettings, metrics: RagMetrics, tracer_provider: Any = None
) -> Stack:
    """Build the index and every tenant's hardened engines from ``settings``.

    Raises:
        ragprod.ConfigurationError: a layer rejected its configuration, or
            ``ragprod.preflight.validate`` found an error in the engine's setup.
    """
    index = VectorStoreIndex.from_documents(load_corpus(), embed_model=HashEmbedding(dim=256))
    llm = ExtractiveLLM()
    faults = FaultSwitch() if settings.fault_injection else None

    def inner(streaming: bool) -> BaseQueryEngine:
        engine = index.as_query_engine(
            llm=llm, similarity_top_k=settings.similarity_top_k, streaming=streaming
        )
        return FaultInjectingEngine(engine, faults) if faults is not None else engine

    plain, streaming = inner(False), inner(True)
    layers: dict[str, Any] = {"guard": ragprod.QueryGuard(max_chars=settings.max_query_chars)}
    missing: list[str] = []
    if not settings.tracing:
        layers["tracing"] = False
    elif layer_available("tracing"):
        layers["tracing"] = _public("tracing").Tracing(tracer_provider=tracer_provider)
    else:
        layers["tracing"] = False
        missing.append("tracing")
    cache = None
    if layer_available("cache"):
        cache = layers["cache"] = _cache(settings, metrics)
    else:
        missing.append("cache")
    if settings.pii:
        if layer_available("pii"):
            key = settings.pii_key.get_secret_value() if settings.pii_key else None
            layers["pii"] = _public("pii").PIIAnonymizer(key=key, metrics=metrics)
        else:
            missing.append("pii")
    breaker = None
    resilient = layer_available("resilience")
    if resilient:
        breaker = _breaker(settings)
    else:
        missing.append("resilience")
    tenants: dict[str, TenantEngines] = {}
    for tenant in settings.tenants:
        per_tenant = dict(layers)
        if resilient:
            per_tenant["resilience"] = _resilience(settings, tenant, breaker)
        tenants[tenant] = TenantEngines(
            tenant=tenant,
            query=ragprod.harden(plain, metrics=metrics, name=tenant, **per_tenant),
            stream=ragprod.harden(streaming, metrics=metrics, name=tenant, **per_tenant),
        )
    preflight = _preflight(index, tenants)
    enabled = [name for name, value in layers.items() if value is not False]
    if resilient:
        enabled.append("resilience")
    return Stack(
        settings=settings,
        metrics=metrics,
        index=index,
        tenants=tenants,
        layers=enabled,
        missing=missing,
        cache=cache,
        breaker=breaker,
        faults=faults,
        extras={"preflight": preflight} if preflight is not None else {},
    )
