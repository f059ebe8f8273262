"""Rotation, rewrap (interrupted and resumed), and crypto-shredding."""

from __future__ import annotations

from pathlib import Path

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.storage.kvstore import SimpleKVStore
from llama_index.core.storage.kvstore.types import BaseKVStore

from ragprod.crypto import (
    EncryptedKVStore,
    Keyring,
    RewrapProgress,
    encrypted_storage_context,
    rewrap,
)
from ragprod.errors import KeyNotFoundError
from ragprod.testing import HashEmbedding
from tests.crypto.conftest import close_redis_kvstore, redis_kvstore

COLL = "docstore/data"


def key_ids_in(store: EncryptedKVStore, collection: str) -> list[str]:
    """The key id of every record the inner store holds in ``collection``."""
    return [store._key_id(v) for v in store._raw_records(collection).values()]


def fill(store: EncryptedKVStore, n: int, collection: str = COLL) -> dict[str, dict[str, int]]:
    pairs = {f"doc-{i}": {"i": i} for i in range(n)}
    store.put_all(list(pairs.items()), collection=collection, batch_size=50)
    return pairs


class Crash(Exception):
    """Stands for a process dying in the middle of a rewrap."""


@pytest.fixture(params=["simple", "redis"])
async def inner(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """The backend under the encrypted store: in-memory or a real Redis."""
    if request.param == "simple":
        yield SimpleKVStore(), ""
        return
    store = redis_kvstore(request.getfixturevalue("redis_server_url"))
    yield store, request.getfixturevalue("redis_prefix") + "/"
    await close_redis_kvstore(store)


async def test_old_and_new_keys_coexist_without_read_errors(
    inner: tuple[BaseKVStore, str], keyring: Keyring
) -> None:
    """Between rotate and rewrap every record reads back, whichever key sealed it."""
    backend, prefix = inner
    store = EncryptedKVStore(backend, keyring)
    coll = prefix + COLL
    pairs = fill(store, 30, coll)
    keyring.rotate()
    store.put("doc-0", {"i": 100}, collection=coll)
    pairs["doc-0"] = {"i": 100}
    assert store.get_all(collection=coll) == pairs
    assert await store.aget_all(collection=coll) == pairs
    assert len(set(key_ids_in(store, coll))) == 2


async def test_rewrap_moves_everything_then_old_key_retires(
    inner: tuple[BaseKVStore, str], keyring: Keyring
) -> None:
    """After rewrap every record names the primary, and retiring the old key loses nothing."""
    backend, prefix = inner
    store = EncryptedKVStore(backend, keyring)
    coll = prefix + COLL
    pairs = fill(store, 120, coll)
    old = keyring.primary_id
    new = keyring.rotate()
    seen: list[RewrapProgress] = []
    report = rewrap(store, collections=[coll], batch_size=50, progress=seen.append)
    assert (report.scanned, report.rewrapped, report.current) == (120, 120, 0)
    assert [p.rewrapped for p in seen] == [50, 100, 120]
    assert set(key_ids_in(store, coll)) == {new}
    keyring.retire(old)
    assert store.get_all(collection=coll) == pairs


def test_rewrap_resumes_after_a_crash(keyring: Keyring) -> None:
    """A rewrap killed after one batch leaves all records readable; running again finishes."""
    store = EncryptedKVStore(SimpleKVStore(), keyring)
    pairs = fill(store, 100)
    keyring.rotate()

    def die(progress: RewrapProgress) -> None:
        raise Crash

    with pytest.raises(Crash):
        rewrap(store, collections=[COLL], batch_size=30, progress=die)
    assert store.get_all(collection=COLL) == pairs
    assert key_ids_in(store, COLL).count(keyring.primary_id) == 30
    report = rewrap(store, collections=[COLL], batch_size=30)
    assert (report.rewrapped, report.current) == (70, 30)
    again = rewrap(store, collections=[COLL])
    assert (again.rewrapped, again.current) == (0, 100)
    assert store.get_all(collection=COLL) == pairs


def test_rewrap_visits_collections_this_store_touched(keyring: Keyring) -> None:
    """Without collections=, rewrap covers LlamaIndex's defaults and every collection used."""
    store = EncryptedKVStore(SimpleKVStore(), keyring)
    fill(store, 3, "custom/collection")
    fill(store, 2, "docstore/metadata")
    keyring.rotate()
    assert rewrap(store).rewrapped == 5


def test_rewrap_with_another_keyring_object(keyring: Keyring) -> None:
    """rewrap(store, keyring) uses the given keyring (e.g. freshly loaded after rotation)."""
    store = EncryptedKVStore(SimpleKVStore(), keyring, store_id="app")
    pairs = fill(store, 5)
    rotated = Keyring.from_json(keyring.to_json())
    rotated.rotate()
    assert rewrap(store, rotated, collections=[COLL]).rewrapped == 5
    assert EncryptedKVStore(store.kvstore, rotated, store_id="app").get_all(COLL) == pairs


def test_rewrap_sealed_files(tmp_path: Path, keyring: Keyring) -> None:
    """rewrap(persist_dir, keyring) re-seals every sealed file; the index still loads."""
    ctx = encrypted_storage_context(keyring)
    VectorStoreIndex.from_documents(
        [Document(text="rotation test")], storage_context=ctx, embed_model=HashEmbedding()
    )
    ctx.persist(persist_dir=str(tmp_path))
    old = keyring.primary_id
    keyring.rotate()
    report = rewrap(tmp_path, keyring)
    assert (report.scanned, report.rewrapped) == (3, 3)
    assert rewrap(tmp_path, keyring).rewrapped == 0
    keyring.retire(old)
    loaded = encrypted_storage_context(keyring, persist_dir=tmp_path)
    assert len(loaded.docstore.docs) == 1
    with pytest.raises(TypeError):
        rewrap(tmp_path)


def test_crypto_shredding_per_tenant() -> None:
    """Destroying one tenant's keyring makes its records unreadable; others are untouched."""
    backend = SimpleKVStore()
    ring_a, ring_b = Keyring.generate(), Keyring.generate()
    tenant_a = EncryptedKVStore(backend, ring_a, store_id="tenant-a")
    tenant_b = EncryptedKVStore(backend, ring_b, store_id="tenant-b")
    fill(tenant_a, 10, "a/" + COLL)
    pairs_b = fill(tenant_b, 10, "b/" + COLL)
    backup_a = ring_a.to_json()
    del ring_a, tenant_a  # tenant a's keys are destroyed (the only live copy is gone)
    assert tenant_b.get_all(collection="b/" + COLL) == pairs_b
    for ring in (Keyring.generate(), ring_b):
        stranger = EncryptedKVStore(backend, ring, store_id="tenant-a")
        assert stranger.get("doc-1", "a/" + COLL) is None  # cannot even find the record
        with pytest.raises(KeyNotFoundError):
            stranger.get_all("a/" + COLL)
    # a backup still opens them: shredding means destroying every copy of the keyring
    restored = EncryptedKVStore(backend, Keyring.from_json(backup_a), store_id="tenant-a")
    assert restored.get("doc-1", collection="a/" + COLL) == {"i": 1}
