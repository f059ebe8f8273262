"""The service's configuration: RAGPROD_* variables, validated before serving."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from examples.fastapi_service import ServiceSettings, create_app
from examples.fastapi_service._errors import classify
from pydantic import ValidationError

from ragprod.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    QueryRejectedError,
    RateLimitedError,
    UpstreamTimeoutError,
)
from tests.service.conftest import ROOT


def test_settings_read_ragprod_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tenants, limits and URLs come from RAGPROD_* variables; keys stay secret in repr."""
    monkeypatch.setenv("RAGPROD_TENANTS", json.dumps({"acme": "k-acme-0123456789"}))
    monkeypatch.setenv("RAGPROD_TENANT_RATE_LIMITS", json.dumps({"acme": [2, 5]}))
    monkeypatch.setenv("RAGPROD_REDIS_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("RAGPROD_REQUEST_TIMEOUT", "2.5")
    settings = ServiceSettings()
    assert settings.tenants["acme"].get_secret_value() == "k-acme-0123456789"
    assert settings.rate_limit_of("acme") == (2.0, 5)
    assert settings.rate_limit_of("other") == (50.0, 100)
    assert settings.request_timeout == 2.5
    assert "k-acme-0123456789" not in repr(settings)


@pytest.mark.parametrize(
    "env",
    [
        {"RAGPROD_TENANTS": json.dumps({"acme": "short"})},
        {"RAGPROD_TENANTS": json.dumps({"a b": "k-0123456789ab"})},
        {"RAGPROD_TENANTS": json.dumps({"a": "k-0123456789ab", "b": "k-0123456789ab"})},
        {"RAGPROD_REDIS_URL": "http://nope"},
        {"RAGPROD_REQUEST_TIMEOUT": "-1"},
        {"RAGPROD_LOG_LEVEL": "LOUD"},
    ],
    ids=["short-key", "bad-tenant", "shared-key", "bad-redis-url", "negative-timeout", "level"],
)
def test_invalid_settings_fail_validation(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str]
) -> None:
    """Each invalid variable fails at startup with a pydantic ValidationError."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        ServiceSettings()


def test_create_app_refuses_no_tenants() -> None:
    """Without any tenant the service refuses to start (it would reject everything)."""
    with pytest.raises(ConfigurationError):
        create_app(ServiceSettings(tenants={}), setup_logging=False)


def test_module_entry_point_exits_2_on_bad_configuration() -> None:
    """python -m examples.fastapi_service exits 2 and never prints the bad key."""
    env = {**os.environ, "RAGPROD_TENANTS": json.dumps({"acme": "k-secret-but-x"}),
           "RAGPROD_PORT": "not-a-port"}  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "examples.fastapi_service"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "RAGPROD_PORT" in proc.stderr or "port" in proc.stderr
    assert "k-secret-but-x" not in proc.stderr + proc.stdout


@pytest.mark.parametrize(
    ("exc", "status", "reason"),
    [
        (QueryRejectedError("too_long", length=10, limit=5), 400, "too_long"),
        (RateLimitedError("t", retry_after=2.2), 429, "rate_limited"),
        (CircuitOpenError("upstream", retry_after=0.4), 503, "circuit_open"),
        (BulkheadFullError("t"), 503, "bulkhead_full"),
        (UpstreamTimeoutError("t", timeout=1.0), 503, "upstream_timeout"),
        (ConnectionError("refused"), 503, "upstream_error"),
        (RuntimeError("bug"), 500, "internal_error"),
    ],
)
def test_failures_map_to_status_and_reason(exc: Exception, status: int, reason: str) -> None:
    """Each ragprod error has one HTTP status and reason; 429/503 carry Retry-After >= 1."""
    failure = classify(exc)
    assert (failure.status, failure.reason) == (status, reason)
    if status in (429, 503):
        assert int(failure.headers()["Retry-After"]) >= 1
    else:
        assert failure.headers() == {}
    assert str(exc) not in json.dumps(failure.body())


@pytest.mark.redis
@pytest.mark.parametrize("redis_up", [True, False], ids=["redis-up", "redis-dead"])
async def test_fallback_readiness_without_preflight_pings_redis(
    redis_up: bool, redis_server_url: str, dead_redis_url: str
) -> None:
    """Without ragprod.preflight, /ready pings Redis itself: ok when it answers, 503 when dead."""
    from examples.fastapi_service._probes import Readiness
    from examples.fastapi_service._stack import Stack

    from ragprod.metrics import RagMetrics

    url = redis_server_url if redis_up else dead_redis_url
    settings = ServiceSettings(tenants={"acme": "k-acme-0123456789"}, redis_url=url)
    stack = Stack(settings, RagMetrics(), index=None, tenants={}, layers=["guard"], missing=[])  # type: ignore[arg-type]
    readiness = Readiness(stack)
    readiness.health = None  # the path taken when ragprod.preflight is not installed
    status, body = await readiness.check()
    assert status == (200 if redis_up else 503)
    assert body["status"] == ("ok" if redis_up else "fail")
    assert body["checks"]["redis"]["status"] == ("ok" if redis_up else "fail")
    assert body["missing_layers"] == []


@pytest.mark.redis
@pytest.mark.parametrize("requires", [True, False], ids=["redis-required", "redis-optional"])
@pytest.mark.parametrize("preflight", [True, False], ids=["healthcheck", "fallback"])
async def test_dead_redis_fails_readiness_only_when_required(
    requires: bool, preflight: bool, dead_redis_url: str
) -> None:
    """RAGPROD_READY_REQUIRES_REDIS=false keeps a replica ready (degraded) while Redis is down."""
    from examples.fastapi_service._probes import Readiness
    from examples.fastapi_service._stack import Stack, layer_available

    from ragprod.metrics import RagMetrics

    if preflight and not layer_available("preflight"):
        pytest.skip("ragprod.preflight not installed")
    settings = ServiceSettings(
        tenants={"acme": "k-acme-0123456789"},  # type: ignore[dict-item]
        redis_url=dead_redis_url,
        ready_requires_redis=requires,
    )
    stack = Stack(settings, RagMetrics(), index=object(), tenants={}, layers=[], missing=[])  # type: ignore[arg-type]
    readiness = Readiness(stack)
    if not preflight:
        readiness.health = None
    status, body = await readiness.check()
    assert status == (503 if requires else 200)
    assert body["status"] == ("fail" if requires else "degraded")
    name = "redis" if requires else "cache_redis"
    assert body["checks"][name]["status"] in {"fail", "timeout"}
