"""Stores for the crypto tests: one factory per backend, real services only."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from llama_index.core.storage.kvstore.simple_kvstore import SimpleKVStore
from llama_index.core.storage.kvstore.types import BaseKVStore

from ragprod.crypto import EncryptedKVStore, EncryptedSimpleKVStore, Keyring


@pytest.fixture
def keyring() -> Keyring:
    """A fresh keyring with one random key."""
    return Keyring.generate()


def redis_kvstore(url: str, **kwargs: Any) -> BaseKVStore:
    """LlamaIndex's own RedisKVStore (llama-index-storage-kvstore-redis), or its test copy."""
    try:
        from llama_index.storage.kvstore.redis import RedisKVStore
    except ImportError:
        from tests.crypto._redis_kvstore import RedisKVStore  # type: ignore[assignment]
    return RedisKVStore(redis_uri=url, **kwargs)


async def close_redis_kvstore(store: Any) -> None:
    store._redis_client.close()
    await store._async_redis_client.aclose()


def postgres_kvstore(url: str, schema: str) -> BaseKVStore:
    """LlamaIndex's own PostgresKVStore (llama-index-storage-kvstore-postgres)."""
    pytest.importorskip("asyncpg")
    pytest.importorskip("psycopg2")
    postgres = pytest.importorskip("llama_index.storage.kvstore.postgres")
    PostgresKVStore = postgres.PostgresKVStore

    rest = re.sub(r"^postgres(ql)?(\+\w+)?://", "", url)
    return PostgresKVStore(
        connection_string=f"postgresql+psycopg2://{rest}",
        async_connection_string=f"postgresql+asyncpg://{rest}",
        table_name="kv",
        schema_name=schema,
        use_jsonb=True,
    )


async def close_postgres_kvstore(store: Any) -> None:
    if store._async_engine is not None:
        await store._async_engine.dispose()
    if store._engine is not None:
        store._engine.dispose()


@dataclass
class StoreCase:
    """A store under test, the collection prefix to use, and the inner store (or None)."""

    name: str
    store: BaseKVStore
    prefix: str
    inner: BaseKVStore | None

    def coll(self, name: str = "data") -> str:
        return f"{self.prefix}/{name}"


STORES = [
    "simple",
    "enc-simple",
    "enc-simple-raw",
    "sealed-memory",
    "enc-redis",
    "enc-redis-base64",
    "enc-postgres",
]


@pytest.fixture(params=STORES)
async def store_case(request: pytest.FixtureRequest, keyring: Keyring) -> AsyncIterator[StoreCase]:
    """Each store the BaseKVStore contract runs against (the plain one is the baseline)."""
    name = request.param
    prefix = f"ragprod-test:{uuid.uuid4().hex[:12]}"
    closer: Callable[[], Awaitable[None]] | None = None
    inner: BaseKVStore | None = None
    store: BaseKVStore
    if name == "simple":
        store = SimpleKVStore()
    elif name == "enc-simple":
        inner = SimpleKVStore()
        store = EncryptedKVStore(inner, keyring)
    elif name == "enc-simple-raw":
        inner = SimpleKVStore()
        store = EncryptedKVStore(inner, keyring, encoding="raw")
    elif name == "sealed-memory":
        store = EncryptedSimpleKVStore(keyring)
    elif name.startswith("enc-redis"):
        prefix = request.getfixturevalue("redis_prefix")
        inner = redis_kvstore(request.getfixturevalue("redis_server_url"))
        store = EncryptedKVStore(
            inner, keyring, encoding="auto" if name == "enc-redis" else "base64"
        )
        closer = lambda: close_redis_kvstore(inner)  # noqa: E731
    else:
        url, schema = request.getfixturevalue("postgres_schema")
        inner = postgres_kvstore(url, schema)
        store = EncryptedKVStore(inner, keyring)
        closer = lambda: close_postgres_kvstore(inner)  # noqa: E731
    yield StoreCase(name, store, prefix, inner)
    if closer is not None:
        await closer()


class Ops:
    """Calls a store's sync or async methods behind one awaitable interface."""

    def __init__(self, store: BaseKVStore, mode: str) -> None:
        self.store = store
        self.mode = mode

    async def put(self, key: str, val: dict[str, Any], collection: str) -> None:
        if self.mode == "sync":
            self.store.put(key, val, collection=collection)
        else:
            await self.store.aput(key, val, collection=collection)

    async def put_all(
        self, pairs: list[tuple[str, dict[str, Any]]], collection: str, batch_size: int = 1
    ) -> None:
        if self.mode == "sync":
            self.store.put_all(pairs, collection=collection, batch_size=batch_size)
        else:
            await self.store.aput_all(pairs, collection=collection, batch_size=batch_size)

    async def get(self, key: str, collection: str) -> dict[str, Any] | None:
        if self.mode == "sync":
            return self.store.get(key, collection=collection)
        return await self.store.aget(key, collection=collection)

    async def get_all(self, collection: str) -> dict[str, dict[str, Any]]:
        if self.mode == "sync":
            return self.store.get_all(collection=collection)
        return await self.store.aget_all(collection=collection)

    async def delete(self, key: str, collection: str) -> bool:
        if self.mode == "sync":
            return self.store.delete(key, collection=collection)
        return await self.store.adelete(key, collection=collection)


@pytest.fixture(params=["sync", "async"])
def ops(request: pytest.FixtureRequest, store_case: StoreCase) -> Ops:
    """The store under test, driven through its sync or its async methods."""
    return Ops(store_case.store, request.param)
