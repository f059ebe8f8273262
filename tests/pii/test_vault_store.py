"""A Vault shared through an encrypted Redis store, and its failure modes."""

from __future__ import annotations

import asyncio

import pytest
import redis
from llama_index.core.storage.kvstore import SimpleKVStore
from llama_index.storage.kvstore.redis import RedisKVStore

from ragprod.crypto import EncryptedKVStore, Keyring
from ragprod.metrics import RagMetrics
from ragprod.pii import PIIAnonymizer, Vault
from ragprod.testing import FakeClock

KEY = b"vault-key-0123456789"
TEXT = "Refund for Mr. Jonas Weber, jonas.weber@example.de, card 4111 1111 1111 1111."

pytestmark = pytest.mark.redis


def encrypted_redis(url: str, keyring: Keyring, **kwargs: object) -> EncryptedKVStore:
    return EncryptedKVStore(RedisKVStore(redis_uri=url, **kwargs), keyring)


def test_two_processes_share_pseudonyms_through_redis(
    redis_server_url: str, redis_prefix: str
) -> None:
    """One vault writes, a fresh one (another worker) restores; Redis holds ciphertext only."""
    keyring = Keyring.generate()
    collection = f"{redis_prefix}:vault"
    writer = PIIAnonymizer(
        key=KEY,
        vault=Vault(store=encrypted_redis(redis_server_url, keyring), collection=collection),
    )
    out = writer.anonymize(TEXT)
    reader = PIIAnonymizer(
        key=KEY,
        vault=Vault(store=encrypted_redis(redis_server_url, keyring), collection=collection),
    )
    assert len(reader.vault) == 0
    assert reader.deanonymize(out.text) == TEXT
    raw = redis.Redis.from_url(redis_server_url).hgetall(collection)
    assert raw
    blob = b"".join(k + v for k, v in raw.items())
    for secret in (b"Weber", b"jonas", b"4111"):
        assert secret not in blob


def test_async_forms_use_the_store(redis_server_url: str, redis_prefix: str) -> None:
    """aanonymize/adeanonymize work with a Redis-backed vault (off the event loop)."""
    keyring = Keyring.generate()
    vault = Vault(store=encrypted_redis(redis_server_url, keyring), collection=f"{redis_prefix}:v")
    pii = PIIAnonymizer(key=KEY, vault=vault)

    async def run() -> str:
        out = await pii.aanonymize(TEXT)
        vault.clear()
        return await pii.adeanonymize(out.text)

    assert asyncio.run(run()) == TEXT


def test_conflicts_are_seen_through_the_store() -> None:
    """A pseudonym another worker bound to another value is not reused."""
    store = SimpleKVStore()
    Vault(store=store).put("PERSON_000000000001", "Ana")
    assert not Vault(store=store).put("PERSON_000000000001", "Bea")
    assert Vault(store=store).put("PERSON_000000000001", "Ana")


def test_dead_redis_degrades_to_memory(dead_redis_url: str) -> None:
    """Connection refused: anonymize and restore still work in memory; errors are counted."""
    metrics = RagMetrics()
    clock = FakeClock()
    vault = Vault(
        store=encrypted_redis(dead_redis_url, Keyring.generate()), clock=clock, retry_after=5
    )
    pii = PIIAnonymizer(key=KEY, vault=vault, metrics=metrics)
    out = pii.anonymize(TEXT)
    assert pii.deanonymize(out.text) == TEXT
    failures = metrics.value("ragprod_pii_vault_errors_total", op="get")
    assert failures == 1.0  # then the store is skipped for retry_after
    pii.anonymize("mail someone@example.org")
    assert metrics.value("ragprod_pii_vault_errors_total", op="get") == 1.0
    clock.advance(5)
    pii.anonymize("mail other@example.org")
    assert metrics.value("ragprod_pii_vault_errors_total", op="get") == 2.0


def test_hung_redis_degrades_to_memory(hung_redis_url: str) -> None:
    """A Redis that never answers times out once, then is bypassed; nothing raises."""
    metrics = RagMetrics()
    store = encrypted_redis(
        hung_redis_url, Keyring.generate(), socket_timeout=0.2, socket_connect_timeout=0.2
    )
    pii = PIIAnonymizer(key=KEY, vault=Vault(store=store), metrics=metrics)
    out = pii.anonymize(TEXT)
    assert pii.deanonymize(out.text) == TEXT
    assert metrics.value("ragprod_pii_vault_errors_total", op="get") == 1.0


def test_undecryptable_records_are_misses(redis_server_url: str, redis_prefix: str) -> None:
    """Records written under another keyring are invisible to this vault: misses, no errors."""
    collection = f"{redis_prefix}:vault"
    writer = PIIAnonymizer(
        key=KEY,
        vault=Vault(
            store=encrypted_redis(redis_server_url, Keyring.generate()), collection=collection
        ),
    )
    out = writer.anonymize(TEXT)
    metrics = RagMetrics()
    reader = PIIAnonymizer(
        key=KEY,
        vault=Vault(
            store=encrypted_redis(redis_server_url, Keyring.generate()), collection=collection
        ),
        metrics=metrics,
    )
    assert reader.deanonymize(out.text) == out.text
    assert metrics.value("ragprod_pii_vault_errors_total", op="get") is None
