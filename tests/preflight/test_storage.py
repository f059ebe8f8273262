"""Regression matrix, storage: dimensions, stores, persistence, keyring, removed APIs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis
from llama_index.core import (
    Document,
    StorageContext,
    SummaryIndex,
    VectorStoreIndex,
    load_index_from_storage,
)
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.kvstore import SimpleKVStore
from llama_index.core.vector_stores import SimpleVectorStore
from llama_index.storage.kvstore.redis import RedisKVStore

from ragprod.errors import KeyNotFoundError
from ragprod.preflight import validate
from ragprod.testing import ExtractiveLLM, HashEmbedding


def test_dimension_mismatch_fails_first_query(index: VectorStoreIndex) -> None:
    """Querying a 64-dim index with a 128-dim model raises; validate reports E020 first."""
    engine = index.as_query_engine(llm=ExtractiveLLM(), embed_model=HashEmbedding(dim=128))
    with pytest.raises(ValueError, match="not aligned"):
        engine.query("refund?")
    report = validate(engine=engine, only=["embedding-dimension"])
    assert report.codes == ("RAGPROD-E020",)
    assert (report.findings[0].value, report.findings[0].expected) == (128, 64)


def test_dimension_against_explicit_vector_store(index: VectorStoreIndex) -> None:
    """A vector store passed alone is compared with Settings' embedding model."""
    store = index.vector_store
    from llama_index.core import Settings

    Settings.embed_model = HashEmbedding(dim=32)
    assert validate(vector_store=store, only=["embedding-dimension"]).codes == ("RAGPROD-E020",)


def test_matching_dimension_passes(index: VectorStoreIndex) -> None:
    """The build-time model's dimension matches the stored vectors."""
    assert validate(index=index, only=["embedding-dimension"]).findings == ()


def test_empty_store_has_no_dimension(configured: None) -> None:
    """An empty vector store gives no dimension finding."""
    assert validate(vector_store=SimpleVectorStore(), only=["embedding-dimension"]).ok


def test_multiple_indexes_need_index_id(configured: None, tmp_path: Path) -> None:
    """Two indexes in one storage: loading without index_id raises; validate warns W032."""
    storage = StorageContext.from_defaults()
    docs = [Document(text="alpha beta"), Document(text="gamma delta")]
    VectorStoreIndex.from_documents(docs, storage_context=storage)
    SummaryIndex.from_documents(docs, storage_context=storage)
    with pytest.raises(ValueError, match="index_id"):
        load_index_from_storage(storage)
    report = validate(storage_context=storage, only=["multiple-indexes"])
    assert report.codes == ("RAGPROD-W032",)
    assert len(report.findings[0].value) == 2  # type: ignore[arg-type]


def test_missing_persist_dir(tmp_path: Path) -> None:
    """A missing persist dir raises at load; validate reports E033 before."""
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError):
        StorageContext.from_defaults(persist_dir=str(missing))
    assert validate(persist_dir=missing, only=["persist-dir"]).codes == ("RAGPROD-E033",)


def test_persist_dir_without_stores(tmp_path: Path) -> None:
    """An existing but empty persist dir is E033 naming the missing files."""
    report = validate(persist_dir=tmp_path, only=["persist-dir"])
    assert report.codes == ("RAGPROD-E033",)
    assert "docstore.json" in report.findings[0].message


def test_persist_dir_from_environment(tmp_path: Path, index: VectorStoreIndex) -> None:
    """RAGPROD_PERSIST_DIR is checked when no persist_dir is passed; a real one passes."""
    index.storage_context.persist(str(tmp_path))
    env = {"RAGPROD_PERSIST_DIR": str(tmp_path)}
    assert validate(env=env, only=["persist-dir"]).findings == ()
    env = {"RAGPROD_PERSIST_DIR": str(tmp_path / "missing")}
    assert validate(env=env, only=["persist-dir"]).codes == ("RAGPROD-E033",)


@pytest.mark.redis
def test_redis_kvstore_async_batching(redis_server_url: str, redis_prefix: str) -> None:
    """Async ingestion with batch_size > 1 on RedisKVStore raises; validate reports E031."""
    kv = RedisKVStore(redis_uri=redis_server_url)
    docstore = KVDocumentStore(kv, namespace=redis_prefix, batch_size=10)
    with pytest.raises(NotImplementedError, match="Batching"):
        asyncio.run(docstore.async_add_documents([Document(text="a"), Document(text="b")]))
    storage = StorageContext.from_defaults(docstore=docstore)
    report = validate(storage_context=storage, only=["kvstore-async-batch"])
    assert report.codes == ("RAGPROD-E031",)
    assert report.findings[0].value["kvstore"] == "RedisKVStore"  # type: ignore[index]


def test_simple_docstore_batching_passes() -> None:
    """The default in-memory docstore (batch 1) has no batching finding."""
    storage = StorageContext.from_defaults(docstore=SimpleDocumentStore())
    assert validate(storage_context=storage, only=["kvstore-async-batch"]).findings == ()


def test_keyring_without_primary() -> None:
    """A duck-typed keyring whose primary is not among its keys is E040."""
    ring = SimpleNamespace(key_ids=("k1",), primary_id="k2")
    assert validate(keyring=ring, only=["keyring"]).codes == ("RAGPROD-E040",)
    empty = SimpleNamespace(key_ids=(), primary_id=None)
    assert validate(keyring=empty, only=["keyring"]).codes == ("RAGPROD-E040",)


def test_keyring_with_primary_passes() -> None:
    """A keyring with a primary among its keys passes."""
    ring = SimpleNamespace(key_ids=("k1", "k2"), primary_id="k2")
    assert validate(keyring=ring, only=["keyring"]).findings == ()


def test_service_context_in_sources(tmp_path: Path) -> None:
    """Application code still using ServiceContext is E050 with line numbers."""
    app = tmp_path / "app.py"
    app.write_text(
        "from llama_index.core import ServiceContext\n"
        "x = 1\n"
        "ctx = ServiceContext.from_defaults(llm=None)\n"
    )
    report = validate(sources=[app], only=["removed-apis"])
    assert report.codes == ("RAGPROD-E050",)
    assert report.findings[0].value == {"source": "app.py", "lines": [1, 3]}


def test_modern_sources_pass(tmp_path: Path) -> None:
    """Code using Settings is not flagged."""
    app = tmp_path / "app.py"
    app.write_text("from llama_index.core import Settings\nSettings.llm = None\n")
    assert validate(sources=[app], only=["removed-apis"]).findings == ()


@pytest.mark.redis
def test_storage_redis_client_found_by_duck_typing(redis_server_url: str) -> None:
    """A RedisKVStore under the docstore is found and probed; a live server passes."""
    kv = RedisKVStore(redis_uri=redis_server_url)
    storage = StorageContext.from_defaults(docstore=KVDocumentStore(kv, namespace="x"))
    report = validate(storage_context=storage, probes=True, only=["redis-reachable"])
    assert report.checks_run == ("redis-reachable",)
    assert report.findings == ()


def test_dead_storage_redis_is_an_error(dead_redis_url: str) -> None:
    """A docstore on a Redis that refuses connections is E030 (the first read would fail)."""
    kv = RedisKVStore(redis_uri=dead_redis_url)
    storage = StorageContext.from_defaults(docstore=KVDocumentStore(kv, namespace="x"))
    with pytest.raises(redis.ConnectionError):
        kv.get("anything")  # LlamaIndex connects lazily: this is the first-request failure
    report = validate(storage_context=storage, probes=True, timeout=0.5, only=["redis-reachable"])
    assert report.codes == ("RAGPROD-E030",)
    assert report.findings[0].value["status"] == "fail"  # type: ignore[index]


def test_probe_checks_skipped_without_probes(dead_redis_url: str) -> None:
    """Without probes=True no network check runs."""
    report = validate(redis_urls=[dead_redis_url], only=["redis-reachable"])
    assert report.checks_run == ()
    assert report.ok


def test_pipeline_without_docstore(configured: None) -> None:
    """An IngestionPipeline without docstore duplicates on re-run; validate warns W034."""
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    store = SimpleVectorStore()
    docs = [Document(text="refunds take five days", doc_id="faq/refunds")]
    for _ in range(2):  # two deployments, each a fresh process (no in-memory cache)
        pipeline = IngestionPipeline(
            transformations=[SentenceSplitter(), HashEmbedding(dim=16)],
            vector_store=store,
            disable_cache=True,
        )
        pipeline.run(documents=docs)
    assert len(store.data.embedding_dict) == 2  # the same document, stored twice
    assert validate(pipeline=pipeline, only=["ingestion-pipeline"]).codes == ("RAGPROD-W034",)


def test_random_document_ids(configured: None) -> None:
    """Documents with uuid4 ids cannot be upserted across runs: W035."""
    from llama_index.core.ingestion import IngestionPipeline

    pipeline = IngestionPipeline(transformations=[], docstore=SimpleDocumentStore())
    docs = [Document(text="a"), Document(text="b")]
    report = validate(pipeline=pipeline, documents=docs, only=["ingestion-pipeline"])
    assert report.codes == ("RAGPROD-W035",)
    stable = [Document(text="a", doc_id="docs/a.md")]
    assert validate(pipeline=pipeline, documents=stable, only=["ingestion-pipeline"]).ok


def test_chunking_of_a_pipeline_is_checked(configured: None) -> None:
    """A parser inside an ingestion pipeline, broken through its setter, is E010."""
    from llama_index.core.ingestion import IngestionPipeline
    from llama_index.core.node_parser import SentenceSplitter

    splitter = SentenceSplitter(chunk_size=512, chunk_overlap=50)
    splitter.chunk_size = 128
    splitter.chunk_overlap = 200
    pipeline = IngestionPipeline(transformations=[splitter], docstore=SimpleDocumentStore())
    report = validate(pipeline=pipeline, only=["chunk-overlap"])
    assert report.codes == ("RAGPROD-E010",)
    assert "pipeline.transformations[0]" in report.findings[0].message


class SealedKV(SimpleKVStore):
    """A duck-typed encrypted KV store whose records were sealed under a missing key."""

    keyring = "present"

    def get_all(self, collection: str = "data") -> dict[str, dict]:  # type: ignore[type-arg]
        raise KeyNotFoundError("old-key")


def test_canary_decrypt_failure() -> None:
    """An encrypted store that cannot decrypt its records is E042 (probes only)."""
    from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore

    storage = StorageContext.from_defaults(docstore=KVDocumentStore(SealedKV()))
    assert validate(storage_context=storage, only=["keyring"]).ok
    report = validate(storage_context=storage, probes=True, only=["keyring"])
    assert report.codes == ("RAGPROD-E042",)
    assert report.findings[0].value == {"store": "docstore", "key_id": "old-key"}


def _crypto():  # type: ignore[no-untyped-def]
    """ragprod.crypto, when it has landed with the API these tests rely on."""
    crypto = pytest.importorskip("ragprod.crypto")
    if not all(hasattr(crypto, n) for n in ("EncryptedKVStore", "Keyring")):
        pytest.skip("ragprod.crypto has no EncryptedKVStore/Keyring yet")
    return crypto


@pytest.mark.redis
def test_encrypted_store_batches_itself(redis_server_url: str, redis_prefix: str) -> None:
    """A wrapper overriding aput_all (EncryptedKVStore) over RedisKVStore is not flagged."""
    crypto = _crypto()
    kv = crypto.EncryptedKVStore(
        RedisKVStore(redis_uri=redis_server_url), crypto.Keyring.generate()
    )
    docstore = KVDocumentStore(kv, namespace=redis_prefix, batch_size=10)
    asyncio.run(docstore.async_add_documents([Document(text="a"), Document(text="b")]))
    storage = StorageContext.from_defaults(docstore=docstore)
    assert validate(storage_context=storage, only=["kvstore-async-batch"]).findings == ()


def test_real_keyring_and_encrypted_store() -> None:
    """ragprod's own Keyring and EncryptedKVStore pass the duck-typed keyring checks."""
    crypto = _crypto()
    ring = crypto.Keyring.generate()
    kv = crypto.EncryptedKVStore(SimpleKVStore(), ring)
    docstore = KVDocumentStore(kv)
    docstore.add_documents([Document(text="sealed record")])
    storage = StorageContext.from_defaults(docstore=docstore)
    report = validate(storage_context=storage, keyring=ring, probes=True, only=["keyring"])
    assert report.findings == ()


def test_wrong_keyring_fails_canary_decrypt() -> None:
    """Records sealed under another keyring fail the canary decrypt: E042."""
    crypto = _crypto()
    inner = SimpleKVStore()
    KVDocumentStore(crypto.EncryptedKVStore(inner, crypto.Keyring.generate())).add_documents(
        [Document(text="sealed record")]
    )
    other = crypto.Keyring.generate()
    storage = StorageContext.from_defaults(
        docstore=KVDocumentStore(crypto.EncryptedKVStore(inner, other))
    )
    report = validate(storage_context=storage, keyring=other, probes=True, only=["keyring"])
    assert report.codes == ("RAGPROD-E042",)


def _cache():  # type: ignore[no-untyped-def]
    """ragprod.cache, when it has landed with TieredCache.from_url."""
    cache = pytest.importorskip("ragprod.cache")
    if not hasattr(getattr(cache, "TieredCache", None), "from_url"):
        pytest.skip("ragprod.cache has no TieredCache.from_url yet")
    return cache


def test_real_tiered_cache_on_dead_redis_is_a_warning(dead_redis_url: str) -> None:
    """ragprod's TieredCache on a dead Redis is found by duck typing: W030, not an error."""
    cache = _cache().TieredCache.from_url(dead_redis_url)
    report = validate(cache=cache, probes=True, timeout=0.5, only=["redis-reachable"])
    assert report.codes == ("RAGPROD-W030",)
    assert report.ok


@pytest.mark.redis
def test_real_tiered_cache_on_live_redis(redis_server_url: str) -> None:
    """ragprod's TieredCache on a live Redis passes the probe."""
    cache = _cache().TieredCache.from_url(redis_server_url)
    report = validate(cache=cache, probes=True, only=["redis-reachable"])
    assert report.findings == ()


def test_hung_and_dead_redis_urls_reported_together(
    dead_redis_url: str, hung_redis_url: str, redis_server_url: str
) -> None:
    """Several Redis targets are probed in parallel; dead and hung ones are E030 each."""
    report = validate(
        redis_urls=[redis_server_url, dead_redis_url, hung_redis_url],
        probes=True,
        timeout=0.3,
        only=["redis-reachable"],
    )
    statuses = sorted(f.value["status"] for f in report.findings)  # type: ignore[index]
    assert report.codes == ("RAGPROD-E030", "RAGPROD-E030")
    assert statuses == ["fail", "timeout"]
