"""CachedRetriever, CachedEmbedding and invalidate_on_change against real indexes and Redis."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest
import redis
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.schema import NodeWithScore, QueryBundle

from ragprod.cache import CachedEmbedding, CachedRetriever, TieredCache, invalidate_on_change
from ragprod.cache._serde import to_float32
from ragprod.testing import HashEmbedding

Make = Callable[..., TieredCache]


class CountingEmbedding(HashEmbedding):
    """HashEmbedding that records every upstream call (batch sizes included)."""

    @property
    def batches(self) -> list[list[str]]:
        return self.__dict__.setdefault("_batches_list", [])

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        return super()._get_text_embeddings(texts)

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        return super()._get_text_embeddings(texts)

    def _get_query_embedding(self, query: str) -> list[float]:
        self.batches.append([query])
        return super()._get_query_embedding(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        self.batches.append([query])
        return super()._get_query_embedding(query)


class CountingRetriever(BaseRetriever):
    """Wraps a retriever and counts the calls that reach it."""

    def __init__(self, inner: BaseRetriever) -> None:
        self.inner = inner
        self.calls = 0
        self.lock = threading.Lock()
        super().__init__()

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        with self.lock:
            self.calls += 1
        return self.inner.retrieve(query_bundle)

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        self.calls += 1
        await asyncio.sleep(0.05)
        return await self.inner.aretrieve(query_bundle)


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    docs = [Document(text=f"Policy {i} covers refunds in {i} days.") for i in range(10)]
    return VectorStoreIndex.from_documents(docs, embed_model=HashEmbedding(dim=64))


def contents(nodes: list[NodeWithScore]) -> list[tuple[str, str, float | None]]:
    return [(n.node.node_id, n.node.get_content(), n.score) for n in nodes]


def test_retrieval_is_cached_per_query(index: VectorStoreIndex, make_tiered: Make) -> None:
    """The second retrieve of a query is served from the cache with identical nodes."""
    inner = CountingRetriever(index.as_retriever(similarity_top_k=2))
    retriever = CachedRetriever(inner, make_tiered())
    first, second = retriever.retrieve("refunds in 3 days"), retriever.retrieve("refunds in 3 days")
    assert contents(first) == contents(second)
    assert inner.calls == 1
    other = CachedRetriever(inner, make_tiered())
    assert contents(other.retrieve("refunds in 3 days")) == contents(first)
    assert inner.calls == 1


def test_returned_nodes_can_be_rescored_safely(index: VectorStoreIndex, make_tiered: Make) -> None:
    """A reranker setting scores in place does not change what the cache returns next."""
    retriever = CachedRetriever(index.as_retriever(similarity_top_k=2), make_tiered())
    first = retriever.retrieve("refunds")
    original = first[0].score
    first[0].score = -1.0
    assert retriever.retrieve("refunds")[0].score == original


async def test_async_retrieve_is_real_and_single_flight(
    index: VectorStoreIndex, make_tiered: Make
) -> None:
    """100 concurrent aretrieve() misses reach the wrapped retriever's async path once."""
    inner = CountingRetriever(index.as_retriever(similarity_top_k=2))
    retriever = CachedRetriever(inner, make_tiered())
    results = await asyncio.gather(*[retriever.aretrieve("refunds") for _ in range(100)])
    assert inner.calls == 1
    assert all(contents(r) == contents(results[0]) for r in results)


def test_retriever_parameters_are_in_the_key(index: VectorStoreIndex, make_tiered: Make) -> None:
    """Retrievers with different top_k over one cache do not share results."""
    cache = make_tiered()
    two = CachedRetriever(index.as_retriever(similarity_top_k=2), cache)
    three = CachedRetriever(index.as_retriever(similarity_top_k=3), cache)
    assert len(two.retrieve("refunds")) == 2
    assert len(three.retrieve("refunds")) == 3


def test_retriever_invalidate(index: VectorStoreIndex, make_tiered: Make) -> None:
    """invalidate() makes the next retrieve reach the wrapped retriever."""
    inner = CountingRetriever(index.as_retriever())
    retriever = CachedRetriever(inner, make_tiered(), namespace="r")
    retriever.retrieve("q")
    retriever.invalidate()
    retriever.retrieve("q")
    assert inner.calls == 2


def test_cached_retriever_type_check(make_tiered: Make) -> None:
    """Wrapping something that is not a retriever is a TypeError."""
    with pytest.raises(TypeError):
        CachedRetriever(object(), make_tiered())  # type: ignore[arg-type]


def test_embedding_batch_embeds_only_misses_once(make_tiered: Make) -> None:
    """A batch sends only uncached, de-duplicated texts upstream, in one call."""
    inner = CountingEmbedding(dim=32)
    emb = CachedEmbedding(inner, make_tiered())
    emb.get_text_embedding("alpha")
    vectors = emb.get_text_embedding_batch(["alpha", "beta", "gamma", "beta"])
    assert inner.batches == [["alpha"], ["beta", "gamma"]]
    assert vectors[1] == vectors[3] == to_float32(inner.embed("beta"))
    assert vectors[0] == emb.get_text_embedding("alpha")


def test_embedding_hits_come_from_redis_in_other_processes(
    make_tiered: Make, redis_client: redis.Redis, redis_prefix: str
) -> None:
    """Vectors written by one CachedEmbedding are read by another as packed float32."""
    writer = CachedEmbedding(CountingEmbedding(dim=64), make_tiered())
    expected = writer.get_text_embedding_batch(["a", "b"])
    inner = CountingEmbedding(dim=64)
    reader = CachedEmbedding(inner, make_tiered())
    assert reader.get_text_embedding_batch(["a", "b"]) == expected
    assert inner.batches == []
    sizes = {len(redis_client.get(k) or b"") for k in redis_client.scan_iter(f"{redis_prefix}:v:*")}
    assert sizes == {10 + 4 * 64}


async def test_async_embedding_paths(make_tiered: Make) -> None:
    """aget_query_embedding and aget_text_embedding_batch use and fill the cache."""
    inner = CountingEmbedding(dim=16)
    emb = CachedEmbedding(inner, make_tiered())
    q1 = await emb.aget_query_embedding("what?")
    q2 = await emb.aget_query_embedding("what?")
    batch = await emb.aget_text_embedding_batch(["x", "y"])
    again = await emb.aget_text_embedding_batch(["y", "x"])
    assert q1 == q2
    assert again == batch[::-1]
    assert inner.batches == [["what?"], ["x", "y"]]


def test_query_and_text_embeddings_are_keyed_apart(make_tiered: Make) -> None:
    """The same string embedded as a query and as a text is two cache entries."""
    inner = CountingEmbedding(dim=16)
    emb = CachedEmbedding(inner, make_tiered())
    emb.get_query_embedding("same")
    emb.get_text_embedding("same")
    assert len(inner.batches) == 2


def test_model_identity_is_in_the_key(make_tiered: Make) -> None:
    """Two models (different dimensions) over one cache never share vectors."""
    cache = make_tiered()
    small = CachedEmbedding(HashEmbedding(dim=16), cache)
    large = CachedEmbedding(HashEmbedding(dim=32), cache)
    assert len(small.get_text_embedding("t")) == 16
    assert len(large.get_text_embedding("t")) == 32


def test_cached_embedding_is_a_drop_in(make_tiered: Make) -> None:
    """An index built with CachedEmbedding works, and rebuilding it re-embeds nothing."""
    inner = CountingEmbedding(dim=32)
    emb = CachedEmbedding(inner, make_tiered())
    docs = [Document(text=f"doc {i}") for i in range(5)]
    VectorStoreIndex.from_documents(docs, embed_model=emb)
    calls = len(inner.batches)
    index = VectorStoreIndex.from_documents(docs, embed_model=emb)
    assert len(inner.batches) == calls
    assert index.as_retriever(similarity_top_k=1).retrieve("doc 3")
    assert emb.embed_model is inner
    assert emb.model_name == inner.model_name


def test_embedding_survives_dead_redis(dead_redis_url: str) -> None:
    """With Redis down, embeddings are still computed (and cached in L1)."""
    inner = CountingEmbedding(dim=8)
    emb = CachedEmbedding(inner, TieredCache.from_url(dead_redis_url))
    assert emb.get_text_embedding("a") == emb.get_text_embedding("a")
    assert len(inner.batches) == 1


def test_cached_embedding_type_check(make_tiered: Make) -> None:
    """Wrapping something that is not an embedding model is a TypeError."""
    with pytest.raises(TypeError):
        CachedEmbedding(object(), make_tiered())  # type: ignore[arg-type]


def test_index_changes_invalidate_the_namespace(make_tiered: Make) -> None:
    """Inserting or deleting through a watched index bumps the namespace generation."""
    cache = make_tiered()
    index = invalidate_on_change(
        VectorStoreIndex([], embed_model=HashEmbedding(dim=16)), cache, "docs"
    )
    g0 = cache.generation("docs")
    doc = Document(text="new policy", id_="d1")
    index.insert(doc)
    g1 = cache.generation("docs")
    index.delete_ref_doc("d1")
    g2 = cache.generation("docs")
    asyncio.run(index.ainsert_nodes([]))
    assert len({g0, g1, g2, cache.generation("docs")}) == 4


def test_nested_index_mutations_bump_once(make_tiered: Make) -> None:
    """insert() calls insert_nodes() inside: the namespace is bumped once per outer call."""
    cache = make_tiered()
    index = invalidate_on_change(VectorStoreIndex([], embed_model=HashEmbedding(dim=8)), cache)
    before = int(cache.generation("default").split(".")[0])
    index.insert(Document(text="x"))
    assert int(cache.generation("default").split(".")[0]) == before + 1
