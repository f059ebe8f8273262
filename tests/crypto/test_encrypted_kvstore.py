"""EncryptedKVStore beyond the contract: what the backend sees, tampering, failures."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest
import redis
from llama_index.core.storage.kvstore import SimpleKVStore
from structlog.testing import capture_logs

from ragprod.crypto import EncryptedKVStore, Keyring
from ragprod.errors import DecryptionError, KeyNotFoundError
from ragprod.metrics import RagMetrics
from tests._services import RedisProcess
from tests.crypto.conftest import close_redis_kvstore, redis_kvstore

CANARY_KEY = "/srv/patients/CANARY-KEY-7f3a.pdf"
CANARY_TEXT = "CANARY-TEXT-91bd diagnosis for Jane Roe"


def test_inner_store_sees_no_plaintext_keys_or_values(keyring: Keyring) -> None:
    """The inner store holds pseudonymized keys and sealed values only."""
    inner = SimpleKVStore()
    store = EncryptedKVStore(inner, keyring)
    store.put(CANARY_KEY, {"text": CANARY_TEXT, "doc_hash": "abc123"})
    dumped = json.dumps(inner.to_dict())
    assert "CANARY" not in dumped
    assert "abc123" not in dumped
    (skey,) = inner.get_all().keys()
    assert skey == store.storage_key(CANARY_KEY)
    assert len(skey) == 32
    assert store.get_all() == {CANARY_KEY: {"text": CANARY_TEXT, "doc_hash": "abc123"}}


def test_storage_keys_depend_on_store_and_collection(keyring: Keyring) -> None:
    """The same key maps to different storage keys per collection and store id."""
    a = EncryptedKVStore(SimpleKVStore(), keyring, store_id="a")
    b = EncryptedKVStore(SimpleKVStore(), keyring, store_id="b")
    assert a.storage_key("k", "c1") == a.storage_key("k", "c1")
    assert len({a.storage_key("k", "c1"), a.storage_key("k", "c2"), b.storage_key("k", "c1")}) == 3


def test_encrypt_keys_false_keeps_keys_but_seals_values(keyring: Keyring) -> None:
    """With encrypt_keys=False the backend sees real keys, still no plaintext values."""
    inner = SimpleKVStore()
    store = EncryptedKVStore(inner, keyring, encrypt_keys=False)
    store.put("doc-1", {"text": CANARY_TEXT})
    assert list(inner.get_all()) == ["doc-1"]
    assert "CANARY" not in json.dumps(inner.to_dict())
    assert store.get("doc-1") == {"text": CANARY_TEXT}


@pytest.mark.parametrize("encrypt_keys", [True, False])
def test_record_moved_to_another_key_fails(keyring: Keyring, encrypt_keys: bool) -> None:
    """A ciphertext copied under another key is rejected (associated data binds the key)."""
    inner = SimpleKVStore()
    store = EncryptedKVStore(inner, keyring, encrypt_keys=encrypt_keys)
    store.put("alice", {"role": "admin"})
    store.put("bob", {"role": "user"})
    alice = inner.get(store.storage_key("alice"))
    assert alice is not None
    inner.put(store.storage_key("bob"), alice)
    with pytest.raises(DecryptionError) as info:
        store.get("bob")
    assert info.value.reason == "authentication_failed"
    assert info.value.key_id == keyring.primary_id


def test_record_moved_to_another_collection_or_store_fails(keyring: Keyring) -> None:
    """A ciphertext copied to another collection, or read by another store id, is rejected."""
    inner = SimpleKVStore()
    store = EncryptedKVStore(inner, keyring, encrypt_keys=False)
    store.put("k", {"v": 1}, collection="c1")
    inner.put("k", inner.get("k", collection="c1") or {}, collection="c2")
    with pytest.raises(DecryptionError):
        store.get("k", collection="c2")
    with pytest.raises(DecryptionError):
        EncryptedKVStore(inner, keyring, store_id="other", encrypt_keys=False).get("k", "c1")


@pytest.mark.parametrize(
    "stored", [{"text": "plain"}, {"ct": 5}, {"ct": "!!not base64!!"}, {"ct": "AQ=="}]
)
def test_foreign_records_raise_malformed_and_are_counted(
    keyring: Keyring, stored: dict[str, Any]
) -> None:
    """A plaintext or garbage record is a typed error, counted and logged without content."""
    metrics = RagMetrics()
    inner = SimpleKVStore()
    store = EncryptedKVStore(inner, keyring, metrics=metrics, encrypt_keys=False)
    inner.put("k", stored)
    with capture_logs() as logs, pytest.raises(DecryptionError) as info:
        store.get("k")
    assert info.value.reason == "malformed"
    assert metrics.value("ragprod_crypto_decrypt_failures_total", reason="malformed") == 1
    assert logs[0]["event"] == "ragprod.crypto.decrypt_failed"
    assert "plain" not in repr(logs) + str(info.value)


def test_shredded_key_raises_key_not_found(keyring: Keyring) -> None:
    """Records under a retired key are unreadable: KeyNotFoundError with the key id."""
    store = EncryptedKVStore(SimpleKVStore(), keyring)
    store.put("k", {"text": CANARY_TEXT})
    old = keyring.primary_id
    keyring.rotate()
    keyring.retire(old)
    with pytest.raises(KeyNotFoundError) as info:
        store.get("k")
    assert info.value.key_id == old
    assert "CANARY" not in str(info.value)


class BatchingKVStore(SimpleKVStore):
    """A SimpleKVStore with a real batched put_all that records the batches it receives."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[tuple[int, int]] = []

    def put_all(
        self,
        kv_pairs: list[tuple[str, dict[str, Any]]],
        collection: str = "data",
        batch_size: int = 1,
    ) -> None:
        self.batches.append((len(kv_pairs), batch_size))
        for key, val in kv_pairs:
            self.put(key, val, collection=collection)


def test_put_all_hands_the_whole_batch_to_the_inner_store(keyring: Keyring) -> None:
    """A batch becomes one inner put_all call with the caller's batch size."""
    inner = BatchingKVStore()
    store = EncryptedKVStore(inner, keyring)
    store.put_all([(f"k{i}", {"i": i}) for i in range(50)], batch_size=20)
    assert inner.batches == [(50, 20)]
    assert len(store.get_all()) == 50


async def test_upstream_redis_aput_all_raises_where_ours_batches(
    redis_server_url: str, redis_prefix: str, keyring: Keyring
) -> None:
    """RedisKVStore.aput_all refuses batch_size > 1; through EncryptedKVStore it works."""
    inner = redis_kvstore(redis_server_url)
    coll = f"{redis_prefix}/data"
    try:
        with pytest.raises(NotImplementedError):
            await inner.aput_all([("a", {"v": 1})], collection=coll, batch_size=10)
        store = EncryptedKVStore(inner, keyring)
        pairs = [(f"k{i}", {"i": i}) for i in range(25)]
        await store.aput_all(pairs, collection=coll, batch_size=10)
        assert await store.aget_all(collection=coll) == dict(pairs)
    finally:
        await close_redis_kvstore(inner)


def test_redis_holds_no_plaintext(
    redis_server_url: str, redis_prefix: str, redis_client: redis.Redis, keyring: Keyring
) -> None:
    """Every field and value Redis holds for the store is free of keys and text."""
    inner = redis_kvstore(redis_server_url)
    coll = f"{redis_prefix}/data"
    store = EncryptedKVStore(inner, keyring)
    store.put_all([(CANARY_KEY, {"text": CANARY_TEXT})], collection=coll, batch_size=10)
    raw = redis_client.hgetall(coll)
    assert len(raw) == 1
    assert b"CANARY" not in b"".join(k + v for k, v in raw.items())
    inner._redis_client.close()


async def test_redis_down_raises_redis_error_then_recovers(keyring: Keyring) -> None:
    """With Redis stopped, calls raise redis' own error (no content); after restart they work."""
    proc = RedisProcess()
    proc.start()
    inner = redis_kvstore(proc.url)
    store = EncryptedKVStore(inner, keyring)
    try:
        store.put("k", {"text": CANARY_TEXT})
        proc.stop()
        with pytest.raises(redis.ConnectionError) as info:
            store.get("k")
        assert "CANARY" not in str(info.value)
        with pytest.raises(redis.ConnectionError):
            await store.aput("k2", {"text": CANARY_TEXT})
        proc.start()
        store.put("k", {"text": "again"})
        assert store.get("k") == {"text": "again"}
        assert await store.aget("k") == {"text": "again"}
    finally:
        await close_redis_kvstore(inner)
        proc.stop()


def test_hung_redis_times_out(hung_redis_url: str, keyring: Keyring) -> None:
    """A Redis that never answers surfaces as redis' TimeoutError within the socket timeout."""
    inner = redis_kvstore(hung_redis_url, socket_timeout=0.2, socket_connect_timeout=0.2)
    store = EncryptedKVStore(inner, keyring)
    with pytest.raises(redis.TimeoutError):
        store.put("k", {"text": CANARY_TEXT})
    inner._redis_client.close()


def test_persist_wrapped_simple_store_is_atomic_and_private(
    tmp_path: Path, keyring: Keyring
) -> None:
    """persist writes ciphertext with mode 0600, leaves no temp file, and loads back."""
    store = EncryptedKVStore(SimpleKVStore(), keyring, store_id="app")
    store.put(CANARY_KEY, {"text": CANARY_TEXT})
    path = tmp_path / "sub" / "kv.json"
    store.persist(str(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert b"CANARY" not in path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["kv.json"]
    back = EncryptedKVStore.from_persist_path(path, keyring, store_id="app")
    assert back.get(CANARY_KEY) == {"text": CANARY_TEXT}


def test_repr_shows_no_secrets(keyring: Keyring) -> None:
    """repr names the inner store, store id and primary key id only."""
    text = repr(EncryptedKVStore(SimpleKVStore(), keyring, store_id="tenant-a"))
    assert "SimpleKVStore" in text
    assert "tenant-a" in text
    assert keyring.primary_id in text


def test_redis_gets_raw_bytes_in_redis_kvstore_layout(
    redis_server_url: str, redis_prefix: str, redis_client: redis.Redis, keyring: Keyring
) -> None:
    """Over RedisKVStore records are raw envelopes (no base64) in the hash of the collection."""
    inner = redis_kvstore(redis_server_url)
    coll = f"{redis_prefix}/data"
    store = EncryptedKVStore(inner, keyring)
    assert store.encoding == "redis-bytes"
    store.put("k", {"text": CANARY_TEXT}, collection=coll)
    (value,) = redis_client.hgetall(coll).values()
    assert value[0] == 1
    assert value[2 : 2 + value[1]] == keyring.primary_id.encode()
    inner.put("plain", {"text": "legacy"}, collection=coll)  # a plaintext JSON record
    with pytest.raises(DecryptionError):
        EncryptedKVStore(inner, keyring, encrypt_keys=False).get("plain", collection=coll)
    inner._redis_client.close()


def test_decode_responses_client_falls_back_to_base64(
    redis_server_url: str, redis_prefix: str, keyring: Keyring
) -> None:
    """A RedisKVStore whose client decodes responses to str gets the base64 form."""
    inner = redis_kvstore(redis_server_url, decode_responses=True)
    store = EncryptedKVStore(inner, keyring)
    assert store.encoding == "base64"
    store.put("k", {"v": 1}, collection=f"{redis_prefix}/data")
    assert store.get("k", collection=f"{redis_prefix}/data") == {"v": 1}
    inner._redis_client.close()


def test_mismatched_encrypt_keys_setting_is_a_typed_error(keyring: Keyring) -> None:
    """Reading records written with the other encrypt_keys setting raises, never misreads."""
    inner = SimpleKVStore()
    EncryptedKVStore(inner, keyring, encrypt_keys=False).put("k", {"v": 1})
    with pytest.raises(DecryptionError) as info:
        EncryptedKVStore(inner, keyring, encrypt_keys=True).get_all()
    assert info.value.reason == "malformed"


async def test_postgres_down_raises_backend_error_without_content(keyring: Keyring) -> None:
    """With PostgreSQL unreachable, calls raise the driver's error and never echo the value."""
    from sqlalchemy.exc import OperationalError

    from tests._services import free_port
    from tests.crypto.conftest import close_postgres_kvstore, postgres_kvstore

    inner = postgres_kvstore(f"postgresql://127.0.0.1:{free_port()}/test", "nowhere")
    store = EncryptedKVStore(inner, keyring)
    try:
        with pytest.raises(OperationalError) as info:
            store.put("k", {"text": CANARY_TEXT})
        assert "CANARY" not in str(info.value)
        with pytest.raises(OperationalError):
            await store.aget("k")
    finally:
        await close_postgres_kvstore(inner)
