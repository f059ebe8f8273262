"""End to end: a real VectorStoreIndex on encrypted storage; canaries never reach disk or a DB."""

from __future__ import annotations

import hashlib
import json
import stat
from pathlib import Path

import psycopg
import pytest
import redis
from llama_index.core import Document, VectorStoreIndex, load_index_from_storage
from llama_index.core.ingestion import DocstoreStrategy, IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore

from ragprod.crypto import (
    EncryptedKVStore,
    Keyring,
    encrypted_ingestion_cache,
    encrypted_storage_context,
)
from ragprod.errors import DecryptionError, KeyNotFoundError
from ragprod.testing import ExtractiveLLM, HashEmbedding
from tests.crypto.conftest import (
    close_postgres_kvstore,
    close_redis_kvstore,
    postgres_kvstore,
    redis_kvstore,
)

MARKERS = ["CANARYTEXT", "CANARYMETA", "CANARYPATH", "CANARYID"]


def canary_documents() -> list[Document]:
    """Documents carrying unique markers in text, metadata, file paths and ids."""
    return [
        Document(
            text=f"CANARYTEXT{i} The refund policy for order {i} allows returns within 30 days.",
            metadata={"file_path": f"/srv/CANARYPATH{i}/contract.pdf", "author": f"CANARYMETA{i}"},
            id_=f"/srv/CANARYID{i}/contract.pdf",
        )
        for i in range(3)
    ]


def forbidden(docs: list[Document]) -> list[bytes]:
    """Byte strings that must not appear at rest: markers and the unsalted doc hashes."""
    hashes = [d.hash.encode() for d in docs]
    return [m.encode() for m in MARKERS] + hashes


def assert_clean(blob: bytes, docs: list[Document]) -> None:
    for needle in forbidden(docs):
        assert needle not in blob, needle[:10]


def build(
    ctx_kwargs: dict[str, object], keyring: Keyring
) -> tuple[VectorStoreIndex, list[Document]]:
    docs = canary_documents()
    ctx = encrypted_storage_context(keyring, **ctx_kwargs)  # type: ignore[arg-type]
    index = VectorStoreIndex.from_documents(docs, storage_context=ctx, embed_model=HashEmbedding())
    return index, docs


def answer(index: VectorStoreIndex) -> str:
    engine = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=1)
    return str(engine.query("What does the refund policy for order 1 allow?"))


def test_file_backed_index_persists_only_ciphertext(tmp_path: Path, keyring: Keyring) -> None:
    """After persist no file holds a marker or doc hash; sealed files are mode 0600."""
    index, docs = build({}, keyring)
    index.storage_context.persist(persist_dir=str(tmp_path))
    files = sorted(p.name for p in tmp_path.iterdir())
    assert {"docstore.json", "index_store.json", "default__vector_store.json"} <= set(files)
    for path in tmp_path.iterdir():
        assert_clean(path.read_bytes(), docs)
    for name in ("docstore.json", "index_store.json", "default__vector_store.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert not [f for f in files if f.endswith(".tmp")]


def test_file_backed_index_reloads_and_answers(tmp_path: Path, keyring: Keyring) -> None:
    """A persisted encrypted index loads with the keyring and answers from its text."""
    index, _ = build({}, keyring)
    index.storage_context.persist(persist_dir=str(tmp_path))
    ctx = encrypted_storage_context(keyring, persist_dir=tmp_path)
    loaded = load_index_from_storage(ctx, embed_model=HashEmbedding())
    assert isinstance(loaded, VectorStoreIndex)
    assert len(ctx.docstore.docs) == 3
    assert "CANARYTEXT1" in answer(loaded)


def test_wrong_keyring_or_swapped_files_fail(tmp_path: Path, keyring: Keyring) -> None:
    """Another keyring cannot load the files; a docstore renamed to index_store fails."""
    index, _ = build({}, keyring)
    index.storage_context.persist(persist_dir=str(tmp_path))
    with pytest.raises(KeyNotFoundError):
        encrypted_storage_context(Keyring.generate(), persist_dir=tmp_path)
    doc, idx = tmp_path / "docstore.json", tmp_path / "index_store.json"
    d, i = doc.read_bytes(), idx.read_bytes()
    doc.write_bytes(i)
    idx.write_bytes(d)
    with pytest.raises(DecryptionError) as info:
        encrypted_storage_context(keyring, persist_dir=tmp_path)
    assert info.value.reason == "authentication_failed"


def test_store_id_is_bound_into_files(tmp_path: Path, keyring: Keyring) -> None:
    """Files written for one store id do not open as another's."""
    index, _ = build({"store_id": "app-a"}, keyring)
    index.storage_context.persist(persist_dir=str(tmp_path))
    with pytest.raises(DecryptionError):
        encrypted_storage_context(keyring, persist_dir=tmp_path, store_id="app-b")


def test_to_dict_is_sealed_and_loads_back(keyring: Keyring) -> None:
    """StorageContext.to_dict holds no marker or doc hash, and from_dict= restores the index."""
    index, docs = build({}, keyring)
    saved = json.loads(json.dumps(index.storage_context.to_dict()))
    assert_clean(json.dumps(saved).encode(), docs)
    ctx = encrypted_storage_context(keyring, from_dict=saved)
    loaded = load_index_from_storage(ctx, embed_model=HashEmbedding())
    assert "CANARYTEXT1" in answer(loaded)  # type: ignore[arg-type]


def test_ingestion_pipeline_dedup_and_cache_stay_encrypted(
    tmp_path: Path, keyring: Keyring
) -> None:
    """De-duplication works over an encrypted docstore; the persisted cache is sealed."""
    ctx = encrypted_storage_context(keyring)
    cache = encrypted_ingestion_cache(keyring)
    pipeline = IngestionPipeline(
        transformations=[SentenceSplitter(chunk_size=256, chunk_overlap=0), HashEmbedding()],
        docstore=ctx.docstore,
        docstore_strategy=DocstoreStrategy.DUPLICATES_ONLY,
        cache=cache,
    )
    docs = canary_documents()
    first = pipeline.run(documents=docs)
    again = pipeline.run(documents=canary_documents())
    assert len(first) == 3
    assert again == []
    cache.persist(str(tmp_path / "llama_cache"))
    ctx.persist(persist_dir=str(tmp_path))
    for path in tmp_path.iterdir():
        assert_clean(path.read_bytes(), docs)
    back = encrypted_ingestion_cache(keyring, persist_path=tmp_path / "llama_cache")
    assert back.cache.get_all(collection=back.collection) == cache.cache.get_all(
        collection=cache.collection
    )


def redis_dump(client: redis.Redis, prefix: str) -> bytes:
    """Every key, hash field and value under ``prefix`` as one blob."""
    parts = []
    for key in client.scan_iter(match=f"{prefix}*"):
        parts.append(key)
        for field, value in client.hgetall(key).items():
            parts += [field, value]
    return b"\n".join(parts)


def test_redis_backed_index_leaves_no_plaintext_in_redis(
    redis_server_url: str,
    redis_prefix: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    keyring: Keyring,
) -> None:
    """Docstore and index store live in Redis as ciphertext; reload and query works."""
    inner = redis_kvstore(redis_server_url)
    kwargs = {"kvstore": inner, "namespace": redis_prefix}
    index, docs = build(kwargs, keyring)
    index.storage_context.persist(persist_dir=str(tmp_path))
    blob = redis_dump(redis_client, redis_prefix)
    assert blob.count(b"\n") > 10
    assert_clean(blob, docs)
    for path in tmp_path.iterdir():
        assert_clean(path.read_bytes(), docs)
    ctx = encrypted_storage_context(keyring, persist_dir=tmp_path, **kwargs)  # type: ignore[arg-type]
    loaded = load_index_from_storage(ctx, embed_model=HashEmbedding())
    assert "CANARYTEXT1" in answer(loaded)  # type: ignore[arg-type]
    inner._redis_client.close()


async def test_async_ingestion_and_delete_over_redis(
    redis_server_url: str, redis_prefix: str, redis_client: redis.Redis, keyring: Keyring
) -> None:
    """Async insert (batched) and async delete work over Redis and leave no plaintext."""
    inner = redis_kvstore(redis_server_url)
    try:
        ctx = encrypted_storage_context(keyring, kvstore=inner, namespace=redis_prefix)
        index = VectorStoreIndex(
            [], storage_context=ctx, embed_model=HashEmbedding(), use_async=True
        )
        docs = canary_documents()
        nodes = SentenceSplitter().get_nodes_from_documents(docs)
        await index.ainsert_nodes(nodes)
        docstore = ctx.docstore
        assert isinstance(docstore, KVDocumentStore)
        assert len(await docstore.aget_all_ref_doc_info() or {}) == 3
        assert_clean(redis_dump(redis_client, redis_prefix), docs)
        await index.adelete_ref_doc(docs[0].doc_id, delete_from_docstore=True)
        infos = await docstore.aget_all_ref_doc_info() or {}
        assert sorted(infos) == sorted(d.doc_id for d in docs[1:])
        assert await docstore.aget_document(nodes[0].node_id, raise_error=False) is None
    finally:
        await close_redis_kvstore(inner)


async def test_postgres_backed_docstore_leaves_no_plaintext(
    postgres_schema: tuple[str, str], keyring: Keyring
) -> None:
    """Docstore rows in PostgreSQL hold no marker or doc hash; they read back."""
    url, schema = postgres_schema
    inner = postgres_kvstore(url, schema)
    try:
        index, docs = build({"kvstore": inner}, keyring)
        with psycopg.connect(url) as conn:
            rows = conn.execute(
                f'SELECT key, namespace, value::text FROM "{schema}".data_kv'
            ).fetchall()
        assert len(rows) > 5
        assert_clean(json.dumps(rows).encode(), docs)
        assert "CANARYTEXT1" in answer(index)
        store = EncryptedKVStore(inner, keyring)
        assert len(store.get_all(collection="docstore/data")) == 3
    finally:
        await close_postgres_kvstore(inner)


def test_doc_hash_is_not_an_oracle_at_rest(keyring: Keyring) -> None:
    """The sha256 doc hash LlamaIndex stores is inside the ciphertext, never beside it."""
    from llama_index.core.storage.kvstore import SimpleKVStore

    inner = SimpleKVStore()
    docstore = KVDocumentStore(EncryptedKVStore(inner, keyring))
    docs = canary_documents()
    docstore.add_documents(docs)
    assert docstore.get_all_document_hashes() == {d.hash: d.doc_id for d in docs}
    stored = json.dumps(inner.to_dict()).encode()
    assert not any(hashlib.sha256(b"").hexdigest().encode() in stored for _ in docs)
    assert_clean(stored, docs)


@pytest.mark.parametrize("shape", ["file", "redis"])
async def test_async_delete_unlinks_node_like_sync(
    shape: str, request: pytest.FixtureRequest, keyring: Keyring
) -> None:
    """adelete_document removes the node id from ref_doc_info (upstream leaves it, #22958)."""
    inner = None
    if shape == "redis":
        inner = redis_kvstore(request.getfixturevalue("redis_server_url"))
        prefix = request.getfixturevalue("redis_prefix")
        ctx = encrypted_storage_context(keyring, kvstore=inner, namespace=prefix)
    else:
        ctx = encrypted_storage_context(keyring)
    try:
        docstore = ctx.docstore
        doc = Document(text="Sentence. " * 300, id_="doc")
        nodes = SentenceSplitter(chunk_size=64, chunk_overlap=0).get_nodes_from_documents([doc])
        await docstore.async_add_documents(nodes)
        await docstore.adelete_document(nodes[0].node_id)
        docstore.delete_document(nodes[1].node_id)
        info = await docstore.aget_ref_doc_info("doc")
        assert info is not None
        assert info.node_ids == [n.node_id for n in nodes[2:]]
    finally:
        if inner is not None:
            await close_redis_kvstore(inner)
