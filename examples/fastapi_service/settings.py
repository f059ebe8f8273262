"""The service's configuration: ``RAGPROD_*`` environment variables, typed and validated.

Every field is read from the environment variable of the same name in upper
case with the ``RAGPROD_`` prefix (``redis_url`` <- ``RAGPROD_REDIS_URL``).
pydantic-settings validates them all at once, so a bad deployment fails at
startup with one message listing every wrong variable, before a request is
served. Secrets (API keys, the PII key) are ``SecretStr``: they never appear
in ``repr()``, logs or error messages.

- ``RAGPROD_TENANTS`` (required):
  JSON object: tenant id -> API key (``{"acme": "k-..."}``)
- ``RAGPROD_HOST`` / ``RAGPROD_PORT`` (default ``127.0.0.1`` / ``8000``):
  where ``python -m examples.fastapi_service`` listens
- ``RAGPROD_REDIS_URL`` (default unset):
  Redis for the L2 cache tier (unset: L1 only)
- ``RAGPROD_REDIS_PREFIX`` (default ``ragprod-svc``):
  key prefix of everything the service writes to Redis
- ``RAGPROD_READY_REQUIRES_REDIS`` (default ``true``):
  ``/ready`` fails while Redis does not answer
- ``RAGPROD_PROBE_TIMEOUT`` (default ``0.5``):
  seconds per readiness probe
- ``RAGPROD_REQUEST_TIMEOUT`` (default ``10``):
  deadline of one query, streams included (seconds)
- ``RAGPROD_RATE_LIMIT`` / ``RAGPROD_RATE_BURST`` (default ``50`` / ``100``):
  per-tenant queries per second / burst
- ``RAGPROD_TENANT_RATE_LIMITS`` (default ``{}``):
  JSON object: tenant id -> ``[rate, burst]``, overriding the two above
- ``RAGPROD_MAX_QUERY_CHARS`` (default ``4000``):
  longer queries get 400 ``too_long``
- ``RAGPROD_MAX_BODY_BYTES`` (default ``65536``):
  larger request bodies get 413
- ``RAGPROD_SIMILARITY_TOP_K`` (default ``2``):
  retrieved chunks per query
- ``RAGPROD_CACHE_TTL`` (default ``300``):
  seconds an answer stays cached
- ``RAGPROD_CACHE_MAXSIZE`` (default ``10000``):
  answers the in-process L1 tier holds (LRU beyond that)
- ``RAGPROD_PII`` / ``RAGPROD_PII_KEY`` (default ``true`` / unset):
  pseudonymize PII; the HMAC key (stable pseudonyms across replicas)
- ``RAGPROD_TRACING`` (default ``true``):
  OpenTelemetry spans and ``ragprod_query_*`` metrics
- ``RAGPROD_BREAKER_OPEN_SECONDS`` (default ``5``):
  how long the upstream breaker stays open
- ``RAGPROD_BREAKER_MINIMUM_CALLS`` (default ``10``):
  calls in the window before the breaker may open
- ``RAGPROD_BREAKER_WINDOW`` (default ``50``):
  the last N calls whose failure rate (>= 50 %) opens the breaker
- ``RAGPROD_UPSTREAM_TIMEOUT`` (default ``5``):
  seconds per upstream attempt
- ``RAGPROD_RETRY_ATTEMPTS`` (default ``2``):
  attempts per query (retryable errors only)
- ``RAGPROD_MAX_CONCURRENT`` (default ``32``):
  per-tenant bulkhead: queries in flight
- ``RAGPROD_FALLBACK_ANSWER`` (default unset):
  answer 200 with this text instead of 503 while the upstream is down
- ``RAGPROD_SHARED_RESILIENCE`` (default ``false``):
  keep rate-limit buckets and breaker state in Redis (``RAGPROD_REDIS_URL``) so
  every replica shares them; each falls back to local state while Redis is down
- ``RAGPROD_LOG_LEVEL`` / ``RAGPROD_LOG_JSON`` (default ``INFO`` / ``true``):
  structured logs on stdout
- ``RAGPROD_FAULT_INJECTION`` (default ``false``):
  expose ``POST /admin/faults`` (soak and tests only)
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServiceSettings"]


class ServiceSettings(BaseSettings):
    """Typed ``RAGPROD_*`` settings of the example service.

    Raises:
        pydantic.ValidationError: at construction, listing every invalid variable.

    Example:
        >>> s = ServiceSettings(tenants={"acme": "k-acme-0123456789"})
        >>> sorted(s.tenants), s.port
        (['acme'], 8000)
    """

    model_config = SettingsConfigDict(env_prefix="RAGPROD_", extra="ignore")

    service_name: str = Field(default="ragprod-service", min_length=1, max_length=64)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    tenants: dict[str, SecretStr] = Field(default_factory=dict)
    redis_url: str | None = None
    redis_prefix: str = Field(default="ragprod-svc", min_length=1, max_length=128)
    ready_requires_redis: bool = True
    probe_timeout: float = Field(default=0.5, gt=0, le=30)
    request_timeout: float = Field(default=10.0, gt=0, le=600)
    rate_limit: float = Field(default=50.0, gt=0)
    rate_burst: int = Field(default=100, ge=1)
    tenant_rate_limits: dict[str, tuple[float, int]] = Field(default_factory=dict)
    max_query_chars: int = Field(default=4000, ge=1, le=1_000_000)
    max_body_bytes: int = Field(default=65536, ge=256)
    similarity_top_k: int = Field(default=2, ge=1, le=50)
    cache_ttl: float = Field(default=300.0, gt=0)
    cache_maxsize: int = Field(default=10_000, ge=1)
    pii: bool = True
    pii_key: SecretStr | None = None
    tracing: bool = True
    breaker_open_seconds: float = Field(default=5.0, gt=0, le=3600)
    breaker_minimum_calls: int = Field(default=10, ge=1)
    breaker_window: int = Field(default=50, ge=1)
    upstream_timeout: float = Field(default=5.0, gt=0, le=600)
    retry_attempts: int = Field(default=2, ge=1, le=10)
    max_concurrent: int = Field(default=32, ge=1)
    fallback_answer: str | None = None
    shared_resilience: bool = False
    log_level: str = "INFO"
    log_json: bool = True
    fault_injection: bool = False

    @field_validator("tenants", mode="before")
    @classmethod
    def _parse_tenants(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value) if value.strip() else {}
        return value

    @field_validator("tenants")
    @classmethod
    def _check_tenants(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for tenant, key in value.items():
            if not tenant or not tenant.replace("-", "").replace("_", "").isalnum():
                raise ValueError("tenant ids must be non-empty [A-Za-z0-9_-]")
            if len(key.get_secret_value()) < 12:
                raise ValueError(f"the API key of tenant {tenant!r} must have >= 12 characters")
        keys = [key.get_secret_value() for key in value.values()]
        if len(set(keys)) != len(keys):
            raise ValueError("two tenants share an API key")
        return value

    @field_validator("tenant_rate_limits")
    @classmethod
    def _check_limits(cls, value: dict[str, tuple[float, int]]) -> dict[str, tuple[float, int]]:
        for rate, burst in value.values():
            if rate <= 0 or burst < 1:
                raise ValueError("tenant rate limits need rate > 0 and burst >= 1")
        return value

    def rate_limit_of(self, tenant: str) -> tuple[float, int]:
        """``(queries per second, burst)`` of ``tenant``."""
        return self.tenant_rate_limits.get(tenant, (self.rate_limit, self.rate_burst))

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return value.upper()
