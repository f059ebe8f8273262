"""HealthCheck: liveness and readiness against real Redis/PostgreSQL, up, down and hung."""

from __future__ import annotations

import json
import threading
import warnings
from types import SimpleNamespace

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st
from starlette.applications import Starlette

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # starlette's note about httpx vs httpx2
    from starlette.testclient import TestClient

from ragprod.preflight import HealthCheck, Probe
from ragprod.testing import FakeClock, HashEmbedding
from tests._services import RedisProcess, free_port

T = 0.3  # probe timeout used throughout: small so hung probes end quickly


def test_live_touches_no_dependency(dead_redis_url: str) -> None:
    """live() is ok even when every dependency is down."""
    health = HealthCheck(redis=[dead_redis_url], timeout=T)
    assert health.live().status == "ok"
    assert health.live().checks == {}


def test_ready_with_live_redis(redis_server_url: str) -> None:
    """A Redis that answers PING makes the service ready, with a latency."""
    status = HealthCheck(redis=[redis_server_url], timeout=T).ready()
    assert status.status == "ok"
    assert status.http_status == 200
    assert status.checks["redis"].status == "ok"
    assert status.checks["redis"].latency_ms >= 0


def test_ready_accepts_an_existing_client(redis_client: redis.Redis) -> None:
    """A redis.Redis client is probed on a fresh bounded connection with its address."""
    assert HealthCheck(redis=[redis_client], timeout=T).ready().ok


def test_dead_redis_fails_readiness(dead_redis_url: str) -> None:
    """Connection refused: status fail, HTTP 503, the error class as detail."""
    status = HealthCheck(redis=[dead_redis_url], timeout=T).ready()
    assert status.status == "fail"
    assert status.http_status == 503
    assert status.checks["redis"].status == "fail"
    assert status.checks["redis"].detail == "ConnectionError"


def test_hung_redis_times_out(hung_redis_url: str) -> None:
    """A Redis that accepts and never answers is reported as a timeout, not a hang."""
    status = HealthCheck(redis=[hung_redis_url], timeout=T).ready()
    assert status.checks["redis"].status == "timeout"
    assert not status.ok


async def test_async_ready_up_dead_and_hung(
    redis_server_url: str, dead_redis_url: str, hung_redis_url: str
) -> None:
    """aready() probes three Redis servers concurrently and reports each one."""
    health = HealthCheck(redis=[redis_server_url, dead_redis_url, hung_redis_url], timeout=T)
    status = await health.aready()
    assert {n: r.status for n, r in status.checks.items()} == {
        "redis": "ok",
        "redis1": "fail",
        "redis2": "timeout",
    }
    assert status.status == "fail"


def test_sync_ready_mixed(redis_server_url: str, dead_redis_url: str, hung_redis_url: str) -> None:
    """ready() gives the same per-dependency verdicts as aready()."""
    health = HealthCheck(redis=[redis_server_url, dead_redis_url, hung_redis_url], timeout=T)
    status = health.ready()
    assert [r.status for r in status.checks.values()] == ["ok", "fail", "timeout"]


def test_probes_run_in_parallel() -> None:
    """Two probes that each wait for the other both succeed: they run at the same time."""
    barrier = threading.Barrier(2, timeout=10)
    health = HealthCheck(probes={"a": barrier.wait, "b": barrier.wait}, timeout=15)
    assert health.ready().status == "ok"


async def test_async_probes_run_concurrently() -> None:
    """Async probes that wait on each other complete under aready()."""
    import asyncio

    both = asyncio.Event()
    arrived: list[str] = []

    async def meet(name: str) -> None:
        arrived.append(name)
        if len(arrived) == 2:
            both.set()
        await both.wait()

    health = HealthCheck(
        probes=[
            Probe("a", lambda: None, acheck=lambda: meet("a")),
            Probe("b", lambda: None, acheck=lambda: meet("b")),
        ],
        timeout=5,
    )
    assert (await health.aready()).status == "ok"


def test_redis_outage_and_recovery(private_redis: RedisProcess) -> None:
    """Readiness follows a real Redis: ok, fail when stopped, ok after restart."""
    health = HealthCheck(redis=[private_redis.url], timeout=T)
    assert health.ready().ok
    private_redis.stop()
    assert health.ready().checks["redis"].status == "fail"
    private_redis.start()
    assert health.ready().ok


def test_paused_redis_times_out(private_redis: RedisProcess) -> None:
    """A frozen (SIGSTOP) Redis is a timeout; it recovers on resume."""
    health = HealthCheck(redis=[private_redis.url], timeout=T)
    private_redis.pause()
    try:
        assert health.ready().checks["redis"].status == "timeout"
    finally:
        private_redis.resume()
    assert health.ready().ok


def test_cache_redis_down_is_degraded(redis_server_url: str, dead_redis_url: str) -> None:
    """A cache tier that is down degrades (HTTP 200), it does not fail readiness."""
    status = HealthCheck(redis=[redis_server_url], cache_redis=[dead_redis_url], timeout=T).ready()
    assert status.status == "degraded"
    assert status.http_status == 200


def test_open_breaker_is_degraded() -> None:
    """A duck-typed open breaker is reported and makes the status degraded."""
    breakers = [
        SimpleNamespace(name="llm", state="open"),
        SimpleNamespace(name="db", state="closed"),
    ]
    status = HealthCheck(breakers=breakers).ready()
    assert status.status == "degraded"
    assert status.checks["breaker:llm"].status == "fail"
    assert status.checks["breaker:db"].status == "ok"


def test_keyring_without_primary_fails() -> None:
    """A keyring with no usable primary key fails readiness."""
    bad = SimpleNamespace(key_ids=(), primary_id=None)
    assert HealthCheck(keyring=bad).ready().status == "fail"
    good = SimpleNamespace(key_ids=("k1",), primary_id="k1")
    assert HealthCheck(keyring=good).ready().status == "ok"


def test_index_not_loaded_yet() -> None:
    """An index factory returning None fails readiness until the index is loaded."""
    holder: dict[str, object] = {}
    health = HealthCheck(index=lambda: holder.get("index"))
    assert health.ready().checks["index"].status == "fail"
    holder["index"] = object()
    assert health.ready().ok


def test_embedding_probe() -> None:
    """An embedding model is probed with a short text, sync and async."""
    import asyncio

    health = HealthCheck(embed_model=HashEmbedding(dim=16))
    assert health.ready().ok
    assert asyncio.run(health.aready()).ok


@pytest.mark.postgres
def test_postgres_up(postgres_server_url: str) -> None:
    """A reachable PostgreSQL answers SELECT 1."""
    assert HealthCheck(postgres=[postgres_server_url], timeout=T).ready().ok


def test_postgres_down() -> None:
    """PostgreSQL refusing connections fails readiness."""
    url = f"postgresql://127.0.0.1:{free_port()}/test"
    status = HealthCheck(postgres=[url], timeout=T).ready()
    assert status.checks["postgres"].status == "fail"


def test_postgres_hung(hung_redis_url: str) -> None:
    """A PostgreSQL address that never answers is cut off at the readiness deadline."""
    port = hung_redis_url.rsplit(":", 1)[1].split("/")[0]
    status = HealthCheck(postgres=[f"postgresql://127.0.0.1:{port}/test"], timeout=T).ready()
    assert status.checks["postgres"].status == "timeout"


def test_failure_detail_never_contains_secrets(dead_redis_url: str) -> None:
    """A password in a Redis URL or an exception message never reaches the result."""
    port = dead_redis_url.rsplit(":", 1)[1].split("/")[0]
    url = f"redis://user:hunter2-canary-pw@127.0.0.1:{port}/0"

    def leaky() -> None:
        raise RuntimeError("token=hunter2-canary-pw")

    status = HealthCheck(redis=[url], probes={"custom": leaky}, timeout=T).ready()
    assert "hunter2" not in json.dumps(status.to_dict())
    assert status.checks["custom"].detail == "RuntimeError"


def test_injected_clock_sets_latency() -> None:
    """Latency is measured with the injected clock."""
    clock = FakeClock()
    health = HealthCheck(probes={"slow": lambda: clock.advance(0.25)}, clock=clock)
    assert health.ready().checks["slow"].latency_ms == pytest.approx(250.0)


def test_duplicate_probe_names_rejected() -> None:
    """Two probes with one name raise ValueError; a non-positive timeout too."""
    health = HealthCheck(probes={"x": lambda: None})
    with pytest.raises(ValueError, match="exists"):
        health.add("x", lambda: None)
    with pytest.raises(ValueError, match="timeout"):
        HealthCheck(timeout=0)


def test_starlette_routes(redis_server_url: str, dead_redis_url: str) -> None:
    """/health and /ready mount on Starlette; /ready returns 503 JSON when Redis is down."""
    ok = TestClient(Starlette(routes=HealthCheck(redis=[redis_server_url], timeout=T).routes()))
    assert ok.get("/health").json() == {"status": "ok", "duration_ms": 0.0, "checks": {}}
    assert ok.get("/ready").status_code == 200
    bad = TestClient(Starlette(routes=HealthCheck(redis=[dead_redis_url], timeout=T).routes()))
    response = bad.get("/ready")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["status"] == "fail"


def test_probe_metrics_and_change_log(dead_redis_url: str) -> None:
    """Probe status goes to metrics each call; a status change is logged once, not per call."""
    from structlog.testing import capture_logs

    from ragprod.metrics import RagMetrics

    metrics = RagMetrics()
    flag = {"up": True}

    def flaky() -> None:
        if not flag["up"]:
            raise ConnectionError("down")

    health = HealthCheck(probes={"db": flaky}, metrics=metrics)
    with capture_logs() as logs:
        health.ready()
        flag["up"] = False
        health.ready()
        health.ready()
    assert metrics.value("ragprod_health_probe_up", probe="db") == 0.0
    assert metrics.value("ragprod_health_probe_latency_seconds_count", probe="db") == 3.0
    changes = [e for e in logs if e["event"] == "ragprod.health.probe_changed"]
    assert [(e["old"], e["new"]) for e in changes] == [("ok", "fail")]
    assert changes[0]["error"] == "ConnectionError"


@given(
    st.from_regex(r"[a-z]{1,8}", fullmatch=True),
    st.text(alphabet=st.characters(blacklist_characters="@/", codec="ascii"), min_size=1),
    st.from_regex(r"[a-z0-9.]{1,20}", fullmatch=True),
)
def test_redact_url_hides_any_password(user: str, password: str, host: str) -> None:
    """redact_url never returns the password of a redis URL."""
    from ragprod.preflight._probes import redact_url

    url = f"redis://{user}:{password}@{host}:6379/0"
    redacted = redact_url(url)
    assert redacted == f"redis://{user}:***@{host}:6379/0"


def test_real_circuit_breaker_states() -> None:
    """ragprod's own CircuitBreaker (when present) is read by duck typing: forced open degrades."""
    resilience = pytest.importorskip("ragprod.resilience")
    breaker_cls = getattr(resilience, "CircuitBreaker", None)
    if breaker_cls is None or not hasattr(breaker_cls, "force_open"):
        pytest.skip("ragprod.resilience has no CircuitBreaker.force_open yet")
    breaker = breaker_cls("llm")
    health = HealthCheck(breakers=[breaker])
    assert health.ready().status == "ok"
    breaker.force_open()
    status = health.ready()
    assert status.status == "degraded"
    assert status.checks["breaker:llm"].status == "fail"
