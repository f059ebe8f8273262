"""Encryption at rest for a LlamaIndex index: build, persist, prove, reload, rotate.

Run: ``python examples/crypto_example.py``. Offline; uses Redis at ``REDIS_URL``
(default ``redis://127.0.0.1:6379/0``) for the shared-store part when Redis and
``llama-index-storage-kvstore-redis`` are available, and skips that part otherwise.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from pathlib import Path

from llama_index.core import Document, VectorStoreIndex, load_index_from_storage

from ragprod.crypto import Keyring, encrypted_storage_context, rewrap
from ragprod.testing import ExtractiveLLM, HashEmbedding

SECRET = "Patient Jane Roe, MRN 4471-22, was prescribed 20 mg of atorvastatin."
DOCS = [
    Document(text=SECRET, id_="/clinic/records/jane-roe.txt", metadata={"author": "Dr. Smith"}),
    Document(text="Clinic hours are 8am to 6pm on weekdays.", id_="/clinic/hours.txt"),
]


def file_backed(keyring: Keyring, persist_dir: Path) -> None:
    ctx = encrypted_storage_context(keyring)
    index = VectorStoreIndex.from_documents(DOCS, storage_context=ctx, embed_model=HashEmbedding())
    index.storage_context.persist(persist_dir=str(persist_dir))
    for path in sorted(persist_dir.iterdir()):
        data = path.read_bytes()
        leaked = any(s in data for s in (b"Jane Roe", b"jane-roe", b"Dr. Smith"))
        mode = oct(path.stat().st_mode & 0o777)
        print(f"  {path.name:28s} {len(data):6d} bytes  mode {mode}  plaintext leaked: {leaked}")

    loaded = load_index_from_storage(
        encrypted_storage_context(keyring, persist_dir=persist_dir), embed_model=HashEmbedding()
    )
    answer = loaded.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=1).query(
        "What was Jane Roe prescribed?"
    )
    print(f"  reloaded and queried: {str(answer)[:60]}...")


def rotate(keyring: Keyring, persist_dir: Path) -> None:
    old = keyring.primary_id
    new = keyring.rotate()
    report = rewrap(persist_dir, keyring)
    keyring.retire(old)
    ctx = encrypted_storage_context(keyring, persist_dir=persist_dir)
    print(
        f"  rotated {old} -> {new}; rewrapped {report.rewrapped} files; retired {old}; "
        f"{len(ctx.docstore.docs)} documents still readable"
    )


def shared_redis(keyring: Keyring) -> None:
    try:
        import redis
        from llama_index.storage.kvstore.redis import RedisKVStore
    except ImportError:
        print("  skipped: pip install llama-index-storage-kvstore-redis")
        return
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        print(f"  skipped: no Redis at {url}")
        return
    prefix = f"ragprod-example:{uuid.uuid4().hex[:8]}"
    try:
        ctx = encrypted_storage_context(
            keyring, kvstore=RedisKVStore(redis_uri=url), namespace=prefix
        )
        VectorStoreIndex.from_documents(DOCS, storage_context=ctx, embed_model=HashEmbedding())
        blobs = [
            field + value
            for key in client.scan_iter(match=f"{prefix}*")
            for field, value in client.hgetall(key).items()
        ]
        leaked = any(b"Jane Roe" in b or b"jane-roe" in b for b in blobs)
        print(f"  {len(blobs)} Redis hash entries written; plaintext leaked: {leaked}")
        print(f"  get_document still works: {len(ctx.docstore.docs)} documents")
    finally:
        for key in client.scan_iter(match=f"{prefix}*"):
            client.delete(key)
        client.close()


def main() -> None:
    keyring = Keyring.generate()  # production: Keyring.from_env("RAGPROD_ENCRYPTION_KEYS")
    print(f"keyring: {keyring!r}  (repr never shows key material)")
    with tempfile.TemporaryDirectory() as tmp:
        persist_dir = Path(tmp) / "storage"
        print("file-backed storage context:")
        file_backed(keyring, persist_dir)
        print("key rotation:")
        rotate(keyring, persist_dir)
    print("shared Redis store:")
    shared_redis(keyring)


if __name__ == "__main__":
    main()
