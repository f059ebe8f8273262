"""CachedQueryEngine and the cache step: hits, misses, streaming, failures, harden()."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import redis
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import ragprod
from ragprod.cache import CachedQueryEngine, CacheStep, MemoryCache, RedisCache, TieredCache
from ragprod.cache._step import make_step
from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, FakeClock, FaultyQueryEngine, HashEmbedding
from tests._services import RedisProcess

Make = Callable[..., TieredCache]


def outcome(engine: CachedQueryEngine, name: str) -> float:
    return (
        engine.cache.metrics.value("ragprod_cache_queries_total", engine="default", outcome=name)
        or 0.0
    )


def test_repeated_query_is_served_from_cache(run_query: Any, make_tiered: Make) -> None:
    """The second identical query does not reach the engine and returns an equal answer."""
    inner = FaultyQueryEngine(answer="refunds take 5 days")
    engine = CachedQueryEngine(inner, make_tiered())
    first, second = run_query(engine, "refunds?"), run_query(engine, "refunds?")
    assert str(first) == str(second) == "refunds take 5 days"
    assert inner.calls == 1
    assert isinstance(second, Response)
    assert second is not first
    assert outcome(engine, "hit") == 1
    assert outcome(engine, "miss") == 1


def test_hits_are_independent_copies(make_tiered: Make) -> None:
    """Mutating a returned response (as a PII restore step would) does not alter the cache."""
    engine = CachedQueryEngine(FaultyQueryEngine(answer="<PERSON_1> called"), make_tiered())
    first = engine.query("who?")
    first.response = "Alice called"
    assert first.metadata is not None
    first.metadata["x"] = 1
    again = engine.query("who?")
    assert again.response == "<PERSON_1> called"
    assert again.metadata == {"engine": "faulty"}


def test_other_process_gets_an_l2_hit(run_query: Any, make_tiered: Make) -> None:
    """A second engine over a second cache on the same Redis answers from L2."""
    inner = FaultyQueryEngine(answer="shared")
    run_query(CachedQueryEngine(inner, make_tiered()), "q")
    other = CachedQueryEngine(inner, make_tiered())
    assert str(run_query(other, "q")) == "shared"
    assert inner.calls == 1
    assert other.cache.metrics.value("ragprod_cache_hits_total", tier="l2") == 1


def test_source_nodes_survive_the_round_trip(make_tiered: Make) -> None:
    """A real LlamaIndex engine's answer and source nodes come back intact from L2."""
    docs = [Document(text=f"Policy {i}: refunds in {i} days.") for i in range(6)]
    index = VectorStoreIndex.from_documents(docs, embed_model=HashEmbedding(dim=64))
    inner = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=2)
    first = CachedQueryEngine(inner, make_tiered()).query("refunds in 3 days")
    second = CachedQueryEngine(inner, make_tiered()).query("refunds in 3 days")
    assert second.response == first.response
    assert [(n.node.node_id, n.node.get_content(), n.score) for n in second.source_nodes] == [
        (n.node.node_id, n.node.get_content(), n.score) for n in first.source_nodes
    ]
    assert second.source_nodes[0].node.ref_doc_id == first.source_nodes[0].node.ref_doc_id


def test_errors_are_not_cached(run_query: Any, make_tiered: Make) -> None:
    """An engine failure reaches the caller and the next query tries the engine again."""
    inner = FaultyQueryEngine(answer="ok", failures={1: TimeoutError()})
    engine = CachedQueryEngine(inner, make_tiered())
    with pytest.raises(TimeoutError):
        run_query(engine, "q")
    assert str(run_query(engine, "q")) == "ok"
    assert inner.calls == 2


def test_empty_answers_get_the_short_ttl(
    make_tiered: Make, clock: FakeClock, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """An empty answer is cached, but only for empty_ttl seconds (in L1 and in Redis)."""
    inner = FaultyQueryEngine(answer=lambda q: "" if q == "empty" else "full")
    engine = CachedQueryEngine(inner, TieredCache.memory(clock=clock), empty_ttl=5)
    engine.query("empty")
    engine.query("empty")
    engine.query("full")
    assert inner.calls == 2
    clock.advance(6)
    engine.query("empty")
    engine.query("full")
    assert inner.calls == 3
    shared = CachedQueryEngine(inner, make_tiered(ttl=600), empty_ttl=5)
    shared.query("empty")
    shared.query("full")
    ttls = sorted(redis_client.pttl(k) for k in redis_client.scan_iter(f"{redis_prefix}:v:*"))
    assert len(ttls) == 2
    assert ttls[0] <= 5500
    assert ttls[1] > 500_000


def test_tenants_and_namespaces_do_not_share_entries(make_tiered: Make) -> None:
    """The same query under another tenant or namespace is a miss."""
    cache = make_tiered()
    inner = FaultyQueryEngine(answer=lambda q: q)
    current = {"tenant": "acme"}
    by_tenant = CachedQueryEngine(inner, cache, tenant=lambda: current["tenant"])
    by_tenant.query("q")
    current["tenant"] = "globex"
    by_tenant.query("q")
    CachedQueryEngine(inner, cache, namespace="other").query("q")
    assert inner.calls == 3


def test_engines_over_different_indexes_never_share(make_tiered: Make) -> None:
    """Same question, same settings, different index: two upstream answers."""
    cache = make_tiered()
    a = VectorStoreIndex.from_documents([Document(text="alpha")], embed_model=HashEmbedding(dim=16))
    b = VectorStoreIndex.from_documents([Document(text="beta")], embed_model=HashEmbedding(dim=16))
    ea = CachedQueryEngine(a.as_query_engine(llm=ExtractiveLLM()), cache)
    eb = CachedQueryEngine(b.as_query_engine(llm=ExtractiveLLM()), cache)
    first, second = ea.query("alpha beta?"), eb.query("alpha beta?")
    assert first.source_nodes[0].node.get_content() == "alpha"
    assert second.source_nodes[0].node.get_content() == "beta"


def test_invalidate_drops_the_namespace(run_query: Any, make_tiered: Make) -> None:
    """After invalidate() the same query reaches the engine again."""
    inner = FaultyQueryEngine()
    engine = CachedQueryEngine(inner, make_tiered(), namespace="docs")
    run_query(engine, "q")
    engine.invalidate()
    run_query(engine, "q")
    assert inner.calls == 2
    asyncio.run(engine.ainvalidate())
    run_query(engine, "q")
    assert inner.calls == 3


def test_keys_hold_no_query_text(
    make_tiered: Make, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Redis keys are hashes: the query (here an e-mail address) appears in none of them."""
    engine = CachedQueryEngine(FaultyQueryEngine(), make_tiered(), tenant="acme")
    engine.query("is alice@example.com a customer?")
    keys = [k.decode() for k in redis_client.scan_iter(f"{redis_prefix}:*")]
    assert keys
    assert not any("alice" in k or "acme" in k for k in keys)


def test_streaming_miss_streams_then_hit_replays(run_query: Any, make_tiered: Make) -> None:
    """A streamed answer reaches the caller token by token, is stored at the end, and replays."""
    inner = FaultyQueryEngine(answer="refunds take five days", streaming=True)
    engine = CachedQueryEngine(inner, make_tiered())

    def consume(response: Any) -> list[str]:
        if isinstance(response, AsyncStreamingResponse):

            async def collect() -> list[str]:
                return [t async for t in response.async_response_gen()]

            return asyncio.run(collect())
        assert isinstance(response, StreamingResponse)
        return list(response.response_gen)

    mode = getattr(run_query, "mode", "sync")
    if mode == "async":

        async def both() -> tuple[list[str], list[str]]:
            first = await engine.aquery("q")
            assert isinstance(first, AsyncStreamingResponse)
            tokens = [t async for t in first.async_response_gen()]
            second = await engine.aquery("q")
            assert isinstance(second, AsyncStreamingResponse)
            return tokens, [t async for t in second.async_response_gen()]

        tokens, replay = asyncio.run(both())
    else:
        tokens = consume(engine.query("q"))
        replay = consume(engine.query("q"))
    assert tokens == ["refunds ", "take ", "five ", "days"]
    assert "".join(replay) == "refunds take five days"
    assert inner.calls == 1


def test_abandoned_stream_is_not_stored(make_tiered: Make) -> None:
    """A stream the caller stops reading is not cached (no partial answers)."""
    inner = FaultyQueryEngine(answer="a b c", streaming=True)
    engine = CachedQueryEngine(inner, make_tiered())
    response = engine.query("q")
    assert isinstance(response, StreamingResponse)
    next(response.response_gen)
    engine.query("q")
    assert inner.calls == 2


def test_stream_hit_through_other_driver(make_tiered: Make) -> None:
    """A stream stored via query() replays as an async stream via aquery()."""
    engine = CachedQueryEngine(FaultyQueryEngine(answer="x y", streaming=True), make_tiered())
    response = engine.query("q")
    assert isinstance(response, StreamingResponse)
    assert str(response) == "x y"
    replay = asyncio.run(engine.aquery("q"))
    assert isinstance(replay, AsyncStreamingResponse)
    assert asyncio.run(replay.get_response()).response == "x y"


async def test_two_hundred_concurrent_async_misses_call_upstream_once(make_tiered: Make) -> None:
    """200 identical aquery() misses against a 50 ms engine make exactly one upstream call."""
    inner = FaultyQueryEngine(answer="once", latency=0.05)
    engine = CachedQueryEngine(inner, make_tiered())
    results = await asyncio.gather(*[engine.aquery("same") for _ in range(200)])
    assert inner.calls == 1
    assert {str(r) for r in results} == {"once"}
    assert len({id(r) for r in results}) == 200  # every caller gets its own copy


def test_two_hundred_concurrent_thread_misses_call_upstream_once(make_tiered: Make) -> None:
    """200 threads querying the same miss against a 50 ms engine make one upstream call."""
    import threading

    inner = FaultyQueryEngine(answer="once", latency=0.05)
    engine = CachedQueryEngine(inner, make_tiered())
    barrier = threading.Barrier(200)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(str(engine.query("same")))

    threads = [threading.Thread(target=worker) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["once"] * 200
    # A thread that starts after the flight ended finds the answer in L1: still one call.
    assert inner.calls == 1


def test_dead_redis_means_uncached_not_broken(run_query: Any, dead_redis_url: str) -> None:
    """With Redis refusing connections the engine still answers, and L1 still caches."""
    inner = FaultyQueryEngine()
    engine = CachedQueryEngine(inner, TieredCache.from_url(dead_redis_url))
    assert str(run_query(engine, "q")) == "ok"
    assert str(run_query(engine, "q")) == "ok"
    assert inner.calls == 1


def test_hung_redis_returns_within_the_timeout(run_query: Any, hung_redis_url: str) -> None:
    """A Redis that never answers delays only the first call, by one socket timeout."""
    inner = FaultyQueryEngine()
    engine = CachedQueryEngine(inner, TieredCache.from_url(hung_redis_url, socket_timeout=0.05))
    for _ in range(5):
        assert str(run_query(engine, "q")) == "ok"
    errors = engine.cache.metrics.value
    assert (
        sum(
            errors("ragprod_cache_redis_errors_total", op=op, error="TimeoutError") or 0
            for op in ("generation", "get", "set")
        )
        == 1
    )


def test_redis_killed_mid_test_zero_errors(private_redis: RedisProcess, clock: FakeClock) -> None:
    """Stopping and restarting Redis under a stream of queries surfaces no error."""
    metrics = RagMetrics()
    cache = TieredCache(
        MemoryCache(clock=clock),
        RedisCache(private_redis.url, clock=clock, metrics=metrics),
        clock=clock,
        metrics=metrics,
    )
    inner = FaultyQueryEngine(answer=lambda q: q.upper())
    engine = CachedQueryEngine(inner, cache, fingerprint="fp")
    for i in range(20):
        assert engine.query(f"q{i % 5}").response == f"Q{i % 5}"
    private_redis.stop()
    for i in range(20):
        assert engine.query(f"q{i % 8}").response == f"Q{i % 8}"
    private_redis.start()
    clock.advance(1)
    engine.query("fresh")
    fresh = TieredCache(None, RedisCache(private_redis.url), clock=clock)
    other = CachedQueryEngine(FaultyQueryEngine(answer="never"), fresh, fingerprint="fp")
    assert other.query("fresh").response == "FRESH"


def test_span_attributes_mark_hits(make_tiered: Make) -> None:
    """Inside a recording span, a hit sets cache.hit=True and cache.tier."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    engine = CachedQueryEngine(FaultyQueryEngine(), make_tiered())
    with tracer.start_as_current_span("miss"):
        engine.query("q")
    with tracer.start_as_current_span("hit"):
        engine.query("q")
    spans = {s.name: dict(s.attributes or {}) for s in exporter.get_finished_spans()}
    assert spans["miss"] == {"cache.hit": False}
    assert spans["hit"] == {"cache.hit": True, "cache.tier": "l1"}


def test_harden_composes_the_cache_step(run_query: Any, make_tiered: Make) -> None:
    """harden(cache=TieredCache) caches answers; the namespace is the engine name."""
    inner = FaultyQueryEngine()
    cache = make_tiered()
    engine = ragprod.harden(inner, tracing=False, cache=cache, name="support")
    run_query(engine, "q")
    run_query(engine, "q")
    assert inner.calls == 1
    assert "cache" in repr(engine)
    step = engine.layers["cache"]
    assert isinstance(step, CacheStep)
    assert step.namespace == "support"
    assert engine.metrics.value("ragprod_cache_hits_total", tier="l1") == 1


def test_make_step_accepts_true_and_rejects_junk() -> None:
    """True means an in-memory cache; other types raise TypeError."""
    metrics = RagMetrics()
    step = make_step(True, engine=FaultyQueryEngine(), metrics=metrics, name="x")
    assert isinstance(step, CacheStep)
    assert step.cache.l2 is None
    with pytest.raises(TypeError):
        make_step("redis://", engine=FaultyQueryEngine(), metrics=metrics, name="x")  # type: ignore[arg-type]
    assert make_step(step, engine=FaultyQueryEngine(), metrics=metrics, name="x") is step


def test_plain_tiers_are_accepted(redis_server_url: str, redis_prefix: str) -> None:
    """A bare MemoryCache or RedisCache works as the cache of an engine."""
    inner = FaultyQueryEngine()
    CachedQueryEngine(inner, MemoryCache()).query("q")
    l2 = RedisCache(redis_server_url, prefix=redis_prefix)
    CachedQueryEngine(inner, l2).query("q")
    CachedQueryEngine(inner, l2).query("q")
    assert inner.calls == 2


def test_wrapper_counts_on_the_caches_registry(redis_server_url: str, redis_prefix: str) -> None:
    """An engine built without metrics= counts on the registry its cache already uses."""
    metrics = RagMetrics()
    cache = TieredCache(
        MemoryCache(), RedisCache(redis_server_url, prefix=redis_prefix, metrics=metrics)
    )
    engine = CachedQueryEngine(FaultyQueryEngine(), cache)
    engine.query("q")
    engine.query("q")
    assert cache.metrics is metrics
    assert metrics.value("ragprod_cache_hits_total", tier="l1") == 1
    assert metrics.value("ragprod_cache_queries_total", engine="default", outcome="miss") == 1


def test_redis_killed_under_async_queries(
    run_query: Any, private_redis: RedisProcess, clock: FakeClock
) -> None:
    """query() and aquery() both keep answering while Redis is down and after it returns."""
    cache = TieredCache(MemoryCache(clock=clock), RedisCache(private_redis.url, clock=clock))
    inner = FaultyQueryEngine(answer=lambda q: q[::-1])
    engine = CachedQueryEngine(inner, cache)
    assert str(run_query(engine, "abc")) == "cba"
    private_redis.stop()
    assert str(run_query(engine, "abc")) == "cba"  # L1
    assert str(run_query(engine, "xyz")) == "zyx"  # upstream, Redis skipped
    private_redis.start()
    clock.advance(1)
    assert str(run_query(engine, "new")) == "wen"
    assert cache.l2 is not None
    assert cache.l2.available


def test_uncacheable_responses_pass_through(make_tiered: Make) -> None:
    """A response type the cache does not store (PydanticResponse) reaches the caller as is."""
    from llama_index.core.base.response.schema import PydanticResponse
    from pydantic import BaseModel

    class Answer(BaseModel):
        text: str

    class PydanticEngine(FaultyQueryEngine):
        def _query(self, query_bundle: Any) -> Any:
            self._start(query_bundle)
            return PydanticResponse(Answer(text="structured"))

    inner = PydanticEngine()
    engine = CachedQueryEngine(inner, make_tiered())
    first, second = engine.query("q"), engine.query("q")
    assert isinstance(first, PydanticResponse)
    assert isinstance(second, PydanticResponse)
    assert inner.calls == 2


def test_concurrent_streaming_misses_each_get_a_stream(make_tiered: Make) -> None:
    """Threads that miss together on a streaming engine each receive a complete stream."""
    import threading

    inner = FaultyQueryEngine(answer="a b c", streaming=True, latency=0.05)
    engine = CachedQueryEngine(inner, make_tiered())
    barrier = threading.Barrier(5)
    texts: list[str] = []

    def worker() -> None:
        barrier.wait()
        response = engine.query("q")
        assert isinstance(response, StreamingResponse)
        texts.append("".join(response.response_gen))

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert texts == ["a b c"] * 5
    replay = engine.query("q")
    assert isinstance(replay, StreamingResponse)
    assert "".join(replay.response_gen) == "a b c"
