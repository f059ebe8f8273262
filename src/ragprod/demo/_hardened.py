"""Demo sections on the hardened engine: the stack, then a traced miss and a cache hit.

``harden_section`` wraps the demo index in every ragprod layer and leaves a
:class:`Hardened` on the context; the sections after it (cache, PII,
preflight) query and inspect that engine.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis

import ragprod
from ragprod.cache import MemoryCache, RedisCache, TieredCache
from ragprod.demo._basics import DEMO_QUERIES
from ragprod.demo._core import DemoContext
from ragprod.demo._spans import draw, span_tree
from ragprod.errors import QueryRejectedError
from ragprod.pii import PIIAnonymizer, PIINodePostprocessor, Vault
from ragprod.testing import SpanCapture
from ragprod.tracing import Tracing, instrument, uninstrument

__all__ = [
    "ENGINE_NAME",
    "Hardened",
    "build_engine",
    "cache_section",
    "harden_section",
    "traced",
]

ENGINE_NAME = "demo"
#: A fixed pseudonym key, so the demo's pseudonyms (and cache keys) are the same every
#: run. Real deployments set ``RAGPROD_PII_KEY`` (or ``key=``) to a secret.
DEMO_PII_KEY = b"ragprod-demo-pseudonym-key (not a secret)"


@dataclass
class Hardened:
    """The hardened engine and what the demo needs to look inside it."""

    engine: ragprod.HardenedQueryEngine
    spans: SpanCapture
    tracing: Tracing
    anonymizer: PIIAnonymizer
    cache: TieredCache
    redis_url: str | None = None
    prefix: str | None = None

    def new_cache(self) -> TieredCache:
        """A cache with an empty L1 and this demo's Redis tier (if any)."""
        return make_cache(self.redis_url, self.prefix)


def make_cache(redis_url: str | None, prefix: str | None) -> TieredCache:
    """An in-process L1, plus a Redis L2 under ``prefix`` when a URL is given."""
    l1 = MemoryCache(maxsize=1_000, ttl=300.0)
    if redis_url is None or prefix is None:
        return TieredCache(l1, None)
    return TieredCache(l1, RedisCache(redis_url, prefix=prefix, socket_timeout=0.5))


def build_engine(
    ctx: DemoContext, tracing: Tracing, anonymizer: PIIAnonymizer, cache: TieredCache
) -> ragprod.HardenedQueryEngine:
    """``ragprod.harden`` over the demo index: every layer on, retrieved context pseudonymized."""
    assert ctx.index is not None, "the index section runs first"
    return ragprod.harden(
        ctx.index,
        tracing=tracing,
        guard=True,
        pii=anonymizer,
        cache=cache,
        resilience=True,
        name=ENGINE_NAME,
        llm=ctx.llm,
        similarity_top_k=3,
        node_postprocessors=[PIINodePostprocessor(anonymizer)],
    )


@contextmanager
def traced(hardened: Hardened) -> Iterator[SpanCapture]:
    """Bridge LlamaIndex's spans into the demo's exporter for a block (then remove the bridge)."""
    hardened.spans.clear()
    instrument(hardened.spans.provider, metrics=hardened.engine.metrics)
    try:
        yield hardened.spans
    finally:
        uninstrument()


def _drop_redis_keys(ctx: DemoContext, url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=1.0)
    try:
        keys = list(client.scan_iter(match=f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        left = sum(1 for _ in client.scan_iter(match=f"{prefix}:*", count=1000))
    except redis.RedisError as exc:
        ctx.say(f"  could not clean up Redis keys under {prefix!r}: {type(exc).__name__}")
        ctx.report["cleanup"] = {"prefix": prefix, "error": type(exc).__name__}
        return
    finally:
        client.close()
    ctx.say()
    ctx.say(f"cleanup: deleted {len(keys)} Redis keys under {prefix!r} ({left} left)")
    ctx.report["cleanup"] = {"prefix": prefix, "redis_keys_deleted": len(keys), "left": left}


def harden_section(ctx: DemoContext) -> None:
    """Wrap the index in tracing, guard, PII, cache and resilience with one call."""
    spans = SpanCapture()
    ctx.cleanup.callback(spans.shutdown)
    anonymizer = PIIAnonymizer(key=DEMO_PII_KEY, vault=Vault())
    # Content capture on: harden() scrubs captured text with the PII layer's detectors.
    tracing = Tracing(tracer_provider=spans.provider, capture_content=True)
    prefix = f"ragprod-demo:{uuid.uuid4().hex[:12]}" if ctx.redis_url else None
    cache = make_cache(ctx.redis_url, prefix)
    if ctx.redis_url is not None and prefix is not None:
        ctx.cleanup.callback(_drop_redis_keys, ctx, ctx.redis_url, prefix)
    if cache.l2 is not None:
        ctx.cleanup.callback(cache.l2.close)
    with ctx.timed() as t:
        engine = build_engine(ctx, tracing, anonymizer, cache)
    ctx.hardened = Hardened(engine, spans, tracing, anonymizer, cache, ctx.redis_url, prefix)
    ctx.say("  engine = ragprod.harden(index, tracing=Tracing(...), guard=True, pii=anonymizer,")
    ctx.say("                          cache=cache, resilience=True, llm=llm, similarity_top_k=3)")
    ctx.say(f"  {engine!r}  ({t['ms']:.1f} ms)")
    descriptions = {
        "tracing": "one OTel span per query on an SDK TracerProvider with an in-memory "
        "exporter (never the global provider); content captured, PII-scrubbed",
        "pii": f"pseudonymize {len(anonymizer.types)} entity types in the query "
        "(and, via PIINodePostprocessor, in retrieved context); restore in the answer",
    }
    for name, layer in engine.layers.items():
        ctx.say(f"    {name:<10} {descriptions.get(name, repr(layer))}")
    try:
        engine.query("refunds?\x00")
        rejected = "accepted"
    except QueryRejectedError as exc:
        rejected = exc.reason
    spans.clear()
    ctx.say(f"  guard: a query with a NUL byte is rejected before any work ({rejected})")
    ctx.record("repr", repr(engine))
    ctx.record("layers", list(engine.layers))
    ctx.record("guard_rejected", rejected)
    ctx.record("l2", cache.l2 is not None)
    ctx.record("prefix", prefix)


def _root(tree: list[dict[str, object]]) -> dict[str, object]:
    return tree[0] if tree else {"attributes": {}}


def cache_section(ctx: DemoContext) -> None:
    """A traced miss, the same query as a cache hit, and with Redis an L2 hit."""
    hardened = ctx.hardened
    assert hardened is not None, "the harden section runs first"
    engine, question = hardened.engine, DEMO_QUERIES[0]
    with traced(hardened) as spans:
        with ctx.timed() as miss:
            first = engine.query(question)
        miss_tree = span_tree(spans.spans)
        spans.clear()
        with ctx.timed() as hit:
            second = engine.query(question)
        hit_tree = span_tree(spans.spans)
    hit_attrs = _root(hit_tree)["attributes"]
    assert isinstance(hit_attrs, dict)
    speedup = miss["ms"] / hit["ms"] if hit["ms"] else float("inf")
    ctx.say(f"  Q: {question}")
    ctx.say(f"  A: {first}")
    ctx.say(f"  miss {miss['ms']:7.2f} ms: guard, PII, cache miss, retrieve, LLM, store")
    ctx.say(
        f"  hit  {hit['ms']:7.2f} ms: same answer from {hit_attrs.get('cache.tier')}, "
        f"{speedup:.0f}x faster"
    )
    ctx.say("  spans of the miss (real OTel SDK, in-memory exporter):")
    for line in draw(miss_tree):
        ctx.say(line)
    ctx.say("  spans of the hit:")
    for line in draw(hit_tree):
        ctx.say(line)
    metrics = engine.metrics
    counts = {
        outcome: metrics.value("ragprod_cache_queries_total", engine=ENGINE_NAME, outcome=outcome)
        for outcome in ("miss", "hit")
    }
    ctx.record("question", question)
    ctx.record("miss_ms", round(miss["ms"], 3))
    ctx.record("hit_ms", round(hit["ms"], 3))
    ctx.record("speedup", round(speedup, 1))
    ctx.record("same_answer", str(first) == str(second))
    ctx.record("hit", hit_attrs.get("cache.hit") is True)
    ctx.record("tier", hit_attrs.get("cache.tier"))
    ctx.record("metrics", counts)
    ctx.record("miss_tree", miss_tree)
    ctx.record("hit_tree", hit_tree)
    if hardened.redis_url is not None:
        _l2(ctx, hardened, question, str(first))


def _l2(ctx: DemoContext, hardened: Hardened, question: str, answer: str) -> None:
    """A second engine with an empty L1 (another worker) sharing only the Redis tier."""
    cache = hardened.new_cache()
    if cache.l2 is not None:
        ctx.cleanup.callback(cache.l2.close)
    other = build_engine(ctx, hardened.tracing, hardened.anonymizer, cache)
    with traced(hardened) as spans:
        with ctx.timed() as l2:
            from_l2 = other.query(question)
        l2_attrs = _root(span_tree(spans.spans))["attributes"]
        spans.clear()
        with ctx.timed() as l1:
            other.query(question)
        l1_attrs = _root(span_tree(spans.spans))["attributes"]
    assert isinstance(l2_attrs, dict)
    assert isinstance(l1_attrs, dict)
    ctx.say("  a second engine (think: another worker) with an empty L1, sharing only Redis:")
    ctx.say(
        f"    {l2['ms']:7.2f} ms: hit from {l2_attrs.get('cache.tier')} "
        f"(cache.hit={l2_attrs.get('cache.hit')}), copied into its L1"
    )
    ctx.say(f"    {l1['ms']:7.2f} ms: then hit from {l1_attrs.get('cache.tier')}")
    ctx.record(
        "l2",
        {
            "hit": l2_attrs.get("cache.hit") is True,
            "tier": l2_attrs.get("cache.tier"),
            "ms": round(l2["ms"], 3),
            "same_answer": str(from_l2) == answer,
            "then_tier": l1_attrs.get("cache.tier"),
            "then_ms": round(l1["ms"], 3),
        },
    )
