"""The example service, served by a real uvicorn process on loopback."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from examples.fastapi_service._stack import layer_available

from tests.service.conftest import ACME_KEY, GLOBEX_KEY, TINY_KEY, ServiceProcess

pytestmark = pytest.mark.redis


def needs(*layers: str) -> pytest.MarkDecorator:
    """Skip unless every named ragprod layer is installed (the service leaves it out)."""
    missing = [layer for layer in layers if not layer_available(layer)]
    return pytest.mark.skipif(bool(missing), reason=f"ragprod layer(s) not installed: {missing}")


QUESTION = "How long do refunds take?"


def unique(text: str = QUESTION) -> str:
    """A query no earlier request asked (so it misses the cache)."""
    return f"{text} ({uuid.uuid4().hex[:8]})"


def events(body: str) -> list[tuple[str, dict[str, Any]]]:
    """Parse a server-sent event stream into ``(event, data)`` pairs."""
    out = []
    for block in body.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line)
        out.append((fields.get("event", "message"), json.loads(fields["data"])))
    return out


def wait_until_answering(service: ServiceProcess, timeout: float = 30.0) -> None:
    """Poll with fresh queries until the upstream answers again (breaker closed)."""
    deadline = time.monotonic() + timeout
    with service.client() as client:
        client.post("/admin/faults", json={"mode": "off"})
        while time.monotonic() < deadline:
            if client.post("/query", json={"query": unique()}).status_code == 200:
                return
            time.sleep(0.2)
    pytest.fail("the service did not recover")


def test_health_is_200(service: ServiceProcess) -> None:
    """GET /health answers 200 without an API key."""
    response = httpx.get(f"{service.url}/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@needs("cache")
def test_query_answers_with_sources_and_trace_id(service: ServiceProcess) -> None:
    """POST /query returns the answer, its sources and a trace id; a repeat is a cache hit."""
    query = unique()
    with service.client() as client:
        first = client.post("/query", json={"query": query})
        second = client.post("/query", json={"query": query})
    assert first.status_code == 200, first.text
    body = first.json()
    assert "refund" in body["answer"].lower()
    assert body["sources"][0]["id"] == "policy-refunds"
    assert set(body["sources"][0]) == {"id", "title", "score"}
    assert re.fullmatch(r"[0-9a-f]{32}", body["trace_id"])
    assert body["tenant"] == "acme"
    assert body["cached"] is False
    assert second.json()["cached"] is True
    assert second.json()["answer"] == body["answer"]
    assert second.json()["trace_id"] != body["trace_id"]


def test_incoming_traceparent_is_continued(service: ServiceProcess) -> None:
    """A W3C traceparent header makes the query part of the caller's trace."""
    trace_id = uuid.uuid4().hex
    header = {"traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"}
    query = {"query": unique()}
    with service.client() as client:
        first = client.post("/query", json=query, headers=header).json()
        second = client.post("/query", json=query, headers=header).json()
    assert first["trace_id"] == second["trace_id"] == trace_id
    if layer_available("cache"):  # two requests of one trace keep their own cache flags
        assert first["cached"] is False
        assert second["cached"] is True


@needs("cache")
def test_tenants_do_not_share_cache_entries(service: ServiceProcess) -> None:
    """The same question is a hit for the tenant that asked it and a miss for another."""
    query = unique()
    with service.client(ACME_KEY) as acme, service.client(GLOBEX_KEY) as globex:
        acme.post("/query", json={"query": query})
        assert acme.post("/query", json={"query": query}).json()["cached"] is True
        other = globex.post("/query", json={"query": query}).json()
    assert other["cached"] is False
    assert other["tenant"] == "globex"


@needs("cache", "pii")
def test_answers_are_stored_in_redis_without_raw_pii(
    service: ServiceProcess, redis_server_url: str, redis_service_prefix: str
) -> None:
    """The L2 tier holds the answers under the service prefix, and no raw e-mail address."""
    email = f"jane.{uuid.uuid4().hex[:6]}@example.com"
    with service.client() as client:
        response = client.post("/query", json={"query": f"Refunds for {email}: how long?"})
    assert response.status_code == 200
    client_ = redis.Redis.from_url(redis_server_url)
    try:
        keys = list(client_.scan_iter(match=f"{redis_service_prefix}*", count=1000))
        values = b"".join(v for v in client_.mget(keys) if isinstance(v, bytes)) if keys else b""
    finally:
        client_.close()
    assert keys, "the cache layer wrote nothing to Redis"
    assert email.encode() not in values
    assert all(email.encode() not in key for key in keys)
    assert email not in service.log_text()


def test_stream_flag_answers_with_server_sent_events(service: ServiceProcess) -> None:
    """ "stream": true streams meta, tokens and done events whose text is the JSON answer."""
    query = unique("How do I fail over Redis?")
    with service.client() as client:
        streamed = client.post("/query", json={"query": query, "stream": True})
        plain = client.post("/query", json={"query": query}).json()
    assert streamed.status_code == 200
    assert streamed.headers["content-type"].startswith("text/event-stream")
    parsed = events(streamed.text)
    kinds = [kind for kind, _ in parsed]
    assert kinds[0] == "meta"
    assert kinds[-1] == "done"
    assert kinds.count("token") >= 2
    text = "".join(data["text"] for kind, data in parsed if kind == "token")
    assert text.strip() == plain["answer"].strip()
    done = parsed[-1][1]
    assert done["sources"][0]["id"] == "runbook-redis-failover"
    assert done["cached"] is not True
    assert re.fullmatch(r"[0-9a-f]{32}", parsed[0][1]["trace_id"])


@needs("cache")
def test_accept_header_streams_and_a_repeat_is_cached(service: ServiceProcess) -> None:
    """Accept: text/event-stream streams too; the second identical stream is a cache hit."""
    query = unique()
    headers = {"Accept": "text/event-stream"}
    with service.client() as client:
        first = events(client.post("/query", json={"query": query}, headers=headers).text)
        second = events(client.post("/query", json={"query": query}, headers=headers).text)
    assert first[-1][0] == second[-1][0] == "done"
    assert first[-1][1]["cached"] is False
    assert second[-1][1]["cached"] is True
    text = ["".join(d["text"] for k, d in run if k == "token") for run in (first, second)]
    assert text[0] == text[1]


@pytest.mark.parametrize(
    ("key", "reason"), [(None, "missing_api_key"), ("k-wrong-0123456789", "invalid_api_key")]
)
def test_requests_without_a_valid_key_get_401(
    service: ServiceProcess, key: str | None, reason: str
) -> None:
    """A missing or unknown X-API-Key is 401 with a reason, and the key is not echoed."""
    with service.client(key) as client:
        response = client.post("/query", json={"query": QUESTION})
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "reason": reason}
    assert response.headers["www-authenticate"] == "ApiKey"
    if key:
        assert key not in response.text
        assert key not in service.log_text()


@pytest.mark.parametrize(
    "content",
    [b"not json", b'{"query": 42}', b'{"query": "ok", "extra": 1}', b"{}", b'["q"]'],
    ids=["not-json", "not-a-string", "extra-field", "missing-query", "array"],
)
def test_malformed_bodies_get_400_without_echo(service: ServiceProcess, content: bytes) -> None:
    """A body that is not {"query": str} is 400 invalid_body, never 422 echoing the input."""
    with service.client() as client:
        response = client.post(
            "/query", content=content, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert response.json() == {"error": "bad_request", "reason": "invalid_body"}


@pytest.mark.parametrize(
    ("query", "reason"),
    [("", "empty"), ("   ", "empty"), ("x" * 201, "too_long"), ("a\x00b", "control_characters")],
    ids=["empty", "blank", "too-long", "control"],
)
def test_guard_rejections_are_400_with_reason(
    service: ServiceProcess, query: str, reason: str
) -> None:
    """The guard's reason code comes back with a 400, never the query."""
    with service.client() as client:
        response = client.post("/query", json={"query": query})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "query_rejected"
    assert body["reason"] == reason
    assert "Retry-After" not in response.headers


def test_oversized_body_is_413(service: ServiceProcess) -> None:
    """A body over RAGPROD_MAX_BODY_BYTES is refused before it is parsed."""
    with service.client() as client:
        response = client.post("/query", json={"query": "x" * 5000})
    assert response.status_code == 413
    assert response.json()["reason"] == "body_too_large"


def test_oversized_chunked_body_is_413(service: ServiceProcess) -> None:
    """A chunked body (no Content-Length) is cut off as soon as it passes the limit."""

    def chunks() -> Iterator[bytes]:
        yield b'{"query": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    with service.client() as client:
        response = client.post(
            "/query", content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413


@needs("resilience")
def test_rate_limited_tenant_gets_429_with_retry_after(
    service: ServiceProcess, redis_server_url: str, redis_service_prefix: str
) -> None:
    """Past its burst, a tenant's misses are 429 with Retry-After; other tenants are unaffected."""
    with service.client(TINY_KEY) as tiny, service.client(GLOBEX_KEY) as globex:
        statuses = [tiny.post("/query", json={"query": unique()}) for _ in range(4)]
        other = globex.post("/query", json={"query": unique()})
    limited = [r for r in statuses if r.status_code == 429]
    assert limited, [r.status_code for r in statuses]
    assert {r.status_code for r in statuses} <= {200, 429}
    assert limited[0].json()["reason"] == "rate_limited"
    assert int(limited[0].headers["Retry-After"]) >= 1
    assert other.status_code == 200
    client = redis.Redis.from_url(redis_server_url)
    try:  # RAGPROD_SHARED_RESILIENCE=1: the buckets live in Redis, shared by replicas
        buckets = list(client.scan_iter(match=f"{redis_service_prefix}:ratelimit:*"))
    finally:
        client.close()
    assert buckets


@needs("resilience")
def test_upstream_outage_is_503_then_circuit_open_then_recovers(service: ServiceProcess) -> None:
    """An upstream outage gives clean 503s (the breaker opens); after it clears, 200s return."""
    with service.client() as client:
        set_fault = client.post("/admin/faults", json={"mode": "fail", "duration": 30})
        assert set_fault.json()["mode"] == "fail"
        responses = [client.post("/query", json={"query": unique()}) for _ in range(8)]
        metrics = client.get("/metrics").text
    assert {r.status_code for r in responses} == {503}
    reasons = [r.json()["reason"] for r in responses]
    assert reasons[0] == "upstream_error"
    assert "circuit_open" in reasons
    assert all(int(r.headers["Retry-After"]) >= 1 for r in responses)
    assert (
        'ragprod_resilience_breaker_transitions_total{breaker="upstream",from_state="closed",to_state="open"}'
        in metrics
    )
    assert "Traceback" not in service.log_text()
    wait_until_answering(service)


@needs("cache")
def test_cached_answers_survive_an_upstream_outage(service: ServiceProcess) -> None:
    """While the upstream is down, a question answered before is still served from cache."""
    query = unique()
    with service.client() as client:
        assert client.post("/query", json={"query": query}).status_code == 200
        client.post("/admin/faults", json={"mode": "fail", "duration": 30})
        response = client.post("/query", json={"query": query})
    wait_until_answering(service)
    assert response.status_code == 200
    assert response.json()["cached"] is True


def test_a_stalled_upstream_hits_the_request_deadline(service: ServiceProcess) -> None:
    """A stalled upstream is cut at RAGPROD_REQUEST_TIMEOUT with a 503, not held open."""
    with service.client() as client:
        client.post("/admin/faults", json={"mode": "slow", "delay": 20, "duration": 30})
        response = client.post("/query", json={"query": unique()})
        stream = client.post("/query", json={"query": unique(), "stream": True})
    wait_until_answering(service)
    assert response.status_code == 503
    assert response.json()["reason"] in {"deadline_exceeded", "upstream_timeout"}
    assert stream.status_code == 503


def test_fault_switch_rejects_unknown_modes(service: ServiceProcess) -> None:
    """POST /admin/faults validates its mode."""
    with service.client() as client:
        response = client.post("/admin/faults", json={"mode": "explode"})
    assert response.status_code == 400


def test_ready_is_200_with_redis_up(service: ServiceProcess) -> None:
    """/ready reports every dependency; with Redis answering it is 200."""
    response = httpx.get(f"{service.url}/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] in {"ok", "degraded"}
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["index"]["status"] == "ok"
    assert "guard" in body["layers"]


@needs("cache")
def test_ready_is_503_with_redis_dead_but_queries_still_answer(
    dead_redis_service: ServiceProcess,
) -> None:
    """With Redis down /ready is 503 naming redis, while queries degrade to L1 and succeed."""
    ready = httpx.get(f"{dead_redis_service.url}/ready", timeout=10)
    assert ready.status_code == 503
    assert ready.json()["status"] == "fail"
    redis_check = ready.json()["checks"]["redis"]
    assert redis_check["status"] in {"fail", "timeout"}
    assert "127.0.0.1" not in json.dumps(redis_check)
    query = unique()
    with dead_redis_service.client() as client:
        first = client.post("/query", json={"query": query})
        second = client.post("/query", json={"query": query})
    assert first.status_code == 200
    assert second.json()["cached"] is True
    assert "Traceback" not in dead_redis_service.log_text()


def test_metrics_exposes_ragprod_and_service_series(service: ServiceProcess) -> None:
    """/metrics is Prometheus text with per-tenant query series and no secrets or queries."""
    with service.client() as client:
        client.post("/query", json={"query": QUESTION})
    text = httpx.get(f"{service.url}/metrics").text
    assert "# TYPE ragprod_service_requests_total counter" in text
    assert 'ragprod_service_requests_total{route="/query",status="200"}' in text
    assert 'ragprod_guard_rejections_total{reason="empty"}' in text
    assert 'engine="acme"' in text
    for secret in (ACME_KEY, GLOBEX_KEY, "refunds take", "@example.com"):
        assert secret not in text


def test_unknown_route_is_404_json(service: ServiceProcess) -> None:
    """Unknown paths are a JSON 404."""
    response = httpx.get(f"{service.url}/nope")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
