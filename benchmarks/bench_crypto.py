"""Cost of encryption at rest: ragprod.crypto vs raw AES-GCM and vs the plaintext stores.

Nodes are ~1.5 KB of text (10k of them in a full run, 500 in --quick). Redis
comparisons use ``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) under a
unique key prefix that is deleted afterwards; they are skipped without Redis.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from llama_index.core.schema import TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.kvstore import SimpleKVStore

from _harness import Result, Suite, _stat
from ragprod.crypto import EncryptedKVStore, Keyring, encrypted_storage_context, rewrap
from ragprod.crypto._docstore import FixedKVDocumentStore
from ragprod.crypto._envelope import context, open_sealed, seal

WORDS = [
    "policy",
    "refund",
    "order",
    "customer",
    "invoice",
    "shipping",
    "warranty",
    "account",
    "billing",
]


def _nodes(n: int, tag: str = "") -> list[TextNode]:
    text = " ".join(WORDS[i % len(WORDS)] for i in range(220))  # ~1.5 KB
    return [
        TextNode(
            text=f"{tag}{i} {text}",
            id_=f"node-{tag}{i}",
            metadata={"file_path": f"/data/docs/{i}.txt"},
        )
        for i in range(n)
    ]


def _bench_codec(suite: Suite) -> None:
    ring = Keyring.generate()
    key = os.urandom(32)
    raw = AESGCM(key)
    data = os.urandom(1536)
    ctx = context("default", "docstore/data", "node-1")
    nonce = os.urandom(12)
    blob = seal(ring, data, ctx)
    raw_blob = raw.encrypt(nonce, data, ctx)
    suite.compare(
        "seal 1.5 KB record",
        lambda: raw.encrypt(os.urandom(12), data, ctx),
        lambda: seal(ring, data, ctx),
        baseline_label="raw AESGCM.encrypt + urandom nonce",
        note="envelope: version, key id, nonce; +38 B per record",
    )
    suite.compare(
        "open 1.5 KB record",
        lambda: raw.decrypt(nonce, raw_blob, ctx),
        lambda: open_sealed(ring, blob, ctx),
        baseline_label="raw AESGCM.decrypt",
        note="parse header, look up key id, decrypt",
    )


def _bench_memory(suite: Suite, n: int) -> None:
    ring = Keyring.generate()
    nodes = _nodes(n)
    plain = SimpleDocumentStore()
    plain.add_documents(nodes)
    ctx = encrypted_storage_context(ring)
    ctx.docstore.add_documents(nodes)
    enc = ctx.docstore
    ids = [node.node_id for node in nodes]
    it = iter(range(10**12))
    suite.compare(
        "in-memory get_document",
        lambda: plain.get_document(ids[next(it) % n]),
        lambda: enc.get_document(ids[next(it) % n]),
        baseline_label="SimpleDocumentStore",
        note="encrypted_storage_context(): plaintext in RAM, sealed on persist",
    )
    suite.compare(
        "in-memory get_all_document_hashes",
        plain.get_all_document_hashes,
        enc.get_all_document_hashes,
        baseline_label="SimpleDocumentStore",
        note=f"{n} nodes",
    )
    with tempfile.TemporaryDirectory() as tmp:
        plain_path = os.path.join(tmp, "plain.json")
        enc_path = os.path.join(tmp, "enc.json")
        suite.compare(
            "persist docstore",
            lambda: plain.persist(plain_path),
            lambda: enc.persist(enc_path),
            baseline_label="SimpleDocumentStore.persist",
            note=f"{n} nodes; ours seals the file and writes tmp+fsync+rename, 0600",
        )
        store = enc._kvstore
        suite.compare(
            "load docstore",
            lambda: SimpleDocumentStore.from_persist_path(plain_path),
            lambda: type(store).from_persist_path(enc_path, keyring=ring, label=store.label),
            baseline_label="SimpleDocumentStore.from_persist_path",
            note=f"{n} nodes",
        )


def _bench_rewrap(suite: Suite, n: int) -> None:
    ring = Keyring.generate()
    first = ring.primary_id
    second = ring.rotate()
    store = EncryptedKVStore(SimpleKVStore(), ring, encoding="raw", encrypt_keys=False)
    payload = {"text": "x" * 200}
    store.put_all([(f"k{i}", payload) for i in range(n)], collection="c", batch_size=500)
    aeads = [AESGCM(os.urandom(32)), AESGCM(os.urandom(32))]
    nonce = os.urandom(12)
    raw_blobs = [aeads[0].encrypt(nonce, b"x" * 220, b"c") for _ in range(n)]
    flip = iter(range(10**12))

    def raw_loop() -> None:
        for blob in raw_blobs:
            aeads[1].encrypt(os.urandom(12), aeads[0].decrypt(nonce, blob, b"c"), b"c")

    def ours() -> None:
        ring.set_primary(first if next(flip) % 2 else second)
        rewrap(store, collections=["c"], batch_size=1000)

    result = suite.compare(
        f"rewrap {n} records",
        raw_loop,
        ours,
        baseline_label="raw AESGCM decrypt+encrypt loop",
        rounds=5,
        note="in-memory inner store, raw encoding",
    )
    per_sec = n / (result.candidate.cpu_us / 1e6)
    suite.record(
        Result(
            area=suite.area,
            name="rewrap throughput (CPU)",
            baseline_label="goal: 100k records/s per core",
            candidate_label="ragprod",
            baseline=_stat([10.0], [10.0]),
            candidate=_stat([1e6 / per_sec], [1e6 / per_sec]),
            note=f"{per_sec / 1000:.0f}k records/s per core of CPU (µs per record shown)",
        )
    )


def _redis(url: str) -> Any:
    try:
        import redis
        from llama_index.storage.kvstore.redis import RedisKVStore
    except ImportError:
        return None
    try:
        if not redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
            return None
    except redis.RedisError:
        return None
    return RedisKVStore(redis_uri=url)


def _bench_redis(suite: Suite, n: int) -> None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    plain_kv, enc_inner = _redis(url), _redis(url)
    if plain_kv is None:
        print("bench_crypto: no Redis, skipping Redis comparisons")
        return
    prefix = f"ragprod-bench:{uuid.uuid4().hex[:8]}"
    ring = Keyring.generate()
    plain = KVDocumentStore(plain_kv, namespace=f"{prefix}/plain", batch_size=500)
    enc = FixedKVDocumentStore(
        EncryptedKVStore(enc_inner, ring), namespace=f"{prefix}/enc", batch_size=500
    )
    try:
        nodes = _nodes(n)
        plain.add_documents(nodes)
        enc.add_documents(nodes)
        ids = [node.node_id for node in nodes]
        it = iter(range(10**12))
        suite.compare(
            "Redis get_document",
            lambda: plain.get_document(ids[next(it) % n]),
            lambda: enc.get_document(ids[next(it) % n]),
            baseline_label="KVDocumentStore(RedisKVStore)",
            note=f"{n} nodes of ~1.5 KB; HMAC key, AES-GCM, raw bytes in the hash",
        )
        loop = asyncio.new_event_loop()
        try:
            suite.compare(
                "Redis aget_document",
                lambda: loop.run_until_complete(plain.aget_document(ids[next(it) % n])),
                lambda: loop.run_until_complete(enc.aget_document(ids[next(it) % n])),
                baseline_label="KVDocumentStore(RedisKVStore)",
                note="async",
            )
        finally:
            loop.close()
        batch = _nodes(100, tag="b")
        suite.compare(
            "Redis add_documents (100 nodes)",
            lambda: plain.add_documents(batch),
            lambda: enc.add_documents(batch),
            baseline_label="KVDocumentStore(RedisKVStore)",
            rounds=9,
            note="batch_size=500 (one pipeline per collection)",
        )
        suite.compare(
            "Redis get_all_document_hashes",
            plain.get_all_document_hashes,
            enc.get_all_document_hashes,
            baseline_label="KVDocumentStore(RedisKVStore)",
            rounds=5,
            note=f"{n} nodes: one decrypt per metadata record",
        )
    finally:
        client = plain_kv._redis_client
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
        enc_inner._redis_client.close()


def run(suite: Suite) -> None:
    n = 500 if suite.quick else 10_000
    _bench_codec(suite)
    _bench_memory(suite, n)
    _bench_redis(suite, n)
    _bench_rewrap(suite, n)
