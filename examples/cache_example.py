"""Cache a LlamaIndex query engine in L1 + Redis, then watch it survive Redis going away.

Run: ``python examples/cache_example.py`` (offline). Uses ``REDIS_URL``
(default ``redis://127.0.0.1:6379/0``) when a Redis answers there; without one
it runs with the in-process tier only.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import redis
from llama_index.core import Document, VectorStoreIndex

from ragprod.cache import CachedEmbedding, CachedQueryEngine, TieredCache, invalidate_on_change
from ragprod.testing import ExtractiveLLM, FaultyQueryEngine, HashEmbedding

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
PREFIX = f"ragprod-example:{uuid.uuid4().hex[:8]}"


def redis_available() -> bool:
    try:
        client = redis.Redis.from_url(REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
        ok = bool(client.ping())
        client.close()
        return ok
    except redis.RedisError:
        return False


def timed(label: str, fn: object) -> object:
    start = time.perf_counter()
    result = fn()  # type: ignore[operator]
    print(f"  {label:<38} {(time.perf_counter() - start) * 1000:8.2f} ms")
    return result


def main() -> None:
    use_redis = redis_available()
    cache = TieredCache.from_url(REDIS_URL, prefix=PREFIX) if use_redis else TieredCache.memory()
    print(f"cache: {'L1 + Redis at ' + REDIS_URL if use_redis else 'L1 only (no Redis)'}")

    docs = [
        Document(text="Refunds are issued within 5 business days of receiving the item."),
        Document(text="Standard shipping is free for orders above 50 euros."),
        Document(text="Damaged items can be returned within 30 days."),
    ]
    embed_model = CachedEmbedding(HashEmbedding(dim=256), cache)
    index = VectorStoreIndex.from_documents(docs, embed_model=embed_model)
    invalidate_on_change(index, cache, "shop")
    engine = CachedQueryEngine(
        index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=2), cache, namespace="shop"
    )

    print("\nrepeated query:")
    miss = timed("miss (retrieve + synthesize)", lambda: engine.query("How long do refunds take?"))
    hit = timed("hit (L1)", lambda: engine.query("How long do refunds take?"))
    assert str(miss) == str(hit)
    print(f"  answer: {hit}")

    if use_redis:
        other = CachedQueryEngine(
            index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=2),
            TieredCache.from_url(REDIS_URL, prefix=PREFIX),
            namespace="shop",
        )
        timed("hit in another 'process' (L2)", lambda: other.query("How long do refunds take?"))

    print("\nindex changed -> namespace bumped -> fresh answer:")
    index.insert(Document(text="Refunds are now issued within 2 business days."))
    timed("miss after insert", lambda: engine.query("How long do refunds take?"))

    print("\nstampede: 500 concurrent identical questions, 50 ms upstream:")
    slow = FaultyQueryEngine(answer="computed once", latency=0.05)
    stampede = CachedQueryEngine(slow, cache, namespace="stampede")

    async def storm() -> None:
        await asyncio.gather(*[stampede.aquery("same question") for _ in range(500)])

    timed("500 aquery() calls", lambda: asyncio.run(storm()))
    print(f"  upstream calls: {slow.calls}")

    print("\nRedis unreachable: answers keep coming, nothing raised:")
    dead = CachedQueryEngine(
        FaultyQueryEngine(answer="served without Redis"),
        TieredCache.from_url("redis://127.0.0.1:1/0", socket_timeout=0.05),
    )
    timed("first call (detects the outage)", lambda: dead.query("q"))
    timed("second call (L1, Redis skipped)", lambda: dead.query("q"))

    if use_redis:
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(match=f"{PREFIX}*"):
            client.delete(key)
        client.close()


if __name__ == "__main__":
    main()
