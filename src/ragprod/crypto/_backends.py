"""How sealed records reach an inner store: as JSON-safe dicts, or as raw bytes in Redis.

``EncryptedKVStore`` talks to one backend. :class:`KVBackend` goes through the
inner ``BaseKVStore``'s public methods, storing ``{"ct": <base64 or bytes>}``.
:class:`RedisBytesBackend` is used for LlamaIndex's ``RedisKVStore``: it
issues the same hash commands (``HSET collection key value``) through the
store's own clients, but with the envelope as raw bytes, because
``RedisKVStore`` would JSON-encode the value (forcing base64, +33% size and
most of the CPU cost) and has no batched ``aput_all``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from abc import ABC, abstractmethod
from typing import Any

from llama_index.core.storage.kvstore.types import BaseKVStore

from ragprod.errors import DecryptionError

__all__ = ["FIELD", "Backend", "KVBackend", "RedisBytesBackend", "backend_for"]

#: The one field of a stored value in a JSON-backed store: ``{"ct": <sealed record>}``.
FIELD = "ct"

Pairs = list[tuple[str, Any]]


class Backend(ABC):
    """Stores opaque records (what :meth:`wrap` returns) under storage keys.

    The interface ``EncryptedKVStore`` talks to; :class:`KVBackend` and
    :class:`RedisBytesBackend` implement all of it.
    """

    name = "backend"

    @abstractmethod
    def wrap(self, blob: bytes) -> Any:
        """The stored form of a sealed record."""

    @abstractmethod
    def unwrap(self, stored: Any) -> bytes:
        """The sealed record inside a stored value (``DecryptionError`` if malformed)."""

    @abstractmethod
    def put(self, key: str, stored: Any, collection: str) -> None:
        """Store one record."""

    @abstractmethod
    async def aput(self, key: str, stored: Any, collection: str) -> None:
        """Store one record (async)."""

    @abstractmethod
    def put_all(self, pairs: Pairs, collection: str, batch_size: int) -> None:
        """Store many records, ``batch_size`` per round trip."""

    @abstractmethod
    async def aput_all(self, pairs: Pairs, collection: str, batch_size: int) -> None:
        """Store many records, ``batch_size`` per round trip (async)."""

    @abstractmethod
    def get(self, key: str, collection: str) -> Any | None:
        """The stored value under ``key``, or ``None``."""

    @abstractmethod
    async def aget(self, key: str, collection: str) -> Any | None:
        """The stored value under ``key``, or ``None`` (async)."""

    @abstractmethod
    def get_all(self, collection: str) -> dict[str, Any]:
        """Every stored value of ``collection`` by storage key."""

    @abstractmethod
    async def aget_all(self, collection: str) -> dict[str, Any]:
        """Every stored value of ``collection`` by storage key (async)."""

    @abstractmethod
    def delete(self, key: str, collection: str) -> bool:
        """Remove ``key``; whether it existed."""

    @abstractmethod
    async def adelete(self, key: str, collection: str) -> bool:
        """Remove ``key``; whether it existed (async)."""


class KVBackend(Backend):
    """Records as ``{"ct": ...}`` dicts through any ``BaseKVStore``'s public methods."""

    def __init__(self, inner: BaseKVStore, *, raw: bool) -> None:
        self.inner = inner
        self.raw = raw
        self.name = "raw" if raw else "base64"

    def wrap(self, blob: bytes) -> Any:
        return {FIELD: blob if self.raw else base64.b64encode(blob).decode("ascii")}

    def unwrap(self, stored: Any) -> bytes:
        field = stored.get(FIELD) if isinstance(stored, dict) else None
        if isinstance(field, bytes):
            return field
        if isinstance(field, str):
            try:
                return base64.b64decode(field, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise DecryptionError("malformed") from exc
        raise DecryptionError("malformed")

    def _batches_natively(self, name: str) -> bool:
        return getattr(type(self.inner), name) is not getattr(BaseKVStore, name)

    def put(self, key: str, stored: Any, collection: str) -> None:
        self.inner.put(key, stored, collection=collection)

    async def aput(self, key: str, stored: Any, collection: str) -> None:
        await self.inner.aput(key, stored, collection=collection)

    def put_all(self, pairs: Pairs, collection: str, batch_size: int) -> None:
        if batch_size == 1 or self._batches_natively("put_all"):
            try:
                self.inner.put_all(pairs, collection=collection, batch_size=batch_size)
                return
            except NotImplementedError:
                pass
        for key, stored in pairs:
            self.inner.put(key, stored, collection=collection)

    async def aput_all(self, pairs: Pairs, collection: str, batch_size: int) -> None:
        if batch_size == 1 or self._batches_natively("aput_all"):
            try:
                await self.inner.aput_all(pairs, collection=collection, batch_size=batch_size)
                return
            except NotImplementedError:
                pass
        step = max(1, batch_size)
        for start in range(0, len(pairs), step):
            await asyncio.gather(
                *(
                    self.inner.aput(key, stored, collection=collection)
                    for key, stored in pairs[start : start + step]
                )
            )

    def get(self, key: str, collection: str) -> Any | None:
        return self.inner.get(key, collection=collection)

    async def aget(self, key: str, collection: str) -> Any | None:
        return await self.inner.aget(key, collection=collection)

    def get_all(self, collection: str) -> dict[str, Any]:
        return self.inner.get_all(collection=collection)

    async def aget_all(self, collection: str) -> dict[str, Any]:
        return await self.inner.aget_all(collection=collection)

    def delete(self, key: str, collection: str) -> bool:
        return self.inner.delete(key, collection=collection)

    async def adelete(self, key: str, collection: str) -> bool:
        return await self.inner.adelete(key, collection=collection)


def _text(key: Any) -> str:
    return key.decode("utf-8") if isinstance(key, bytes) else str(key)


class RedisBytesBackend(Backend):
    """Records as raw bytes in the Redis hash ``collection`` (``RedisKVStore``'s layout)."""

    name = "redis-bytes"

    def __init__(self, client: Any, aclient: Any) -> None:
        self.client = client
        self.aclient = aclient

    def wrap(self, blob: bytes) -> Any:
        return blob

    def unwrap(self, stored: Any) -> bytes:
        if isinstance(stored, bytes):
            return stored
        raise DecryptionError("malformed")

    def put(self, key: str, stored: Any, collection: str) -> None:
        self.client.hset(collection, key, stored)

    async def aput(self, key: str, stored: Any, collection: str) -> None:
        await self.aclient.hset(collection, key, stored)

    def put_all(self, pairs: Pairs, collection: str, batch_size: int) -> None:
        step = max(1, batch_size)
        for start in range(0, len(pairs), step):
            with self.client.pipeline(transaction=False) as pipe:
                for key, stored in pairs[start : start + step]:
                    pipe.hset(collection, key, stored)
                pipe.execute()

    async def aput_all(self, pairs: Pairs, collection: str, batch_size: int) -> None:
        step = max(1, batch_size)
        for start in range(0, len(pairs), step):
            async with self.aclient.pipeline(transaction=False) as pipe:
                for key, stored in pairs[start : start + step]:
                    pipe.hset(collection, key, stored)
                await pipe.execute()

    def get(self, key: str, collection: str) -> Any | None:
        return self.client.hget(collection, key)

    async def aget(self, key: str, collection: str) -> Any | None:
        return await self.aclient.hget(collection, key)

    def get_all(self, collection: str) -> dict[str, Any]:
        return {_text(k): v for k, v in self.client.hscan_iter(collection)}

    async def aget_all(self, collection: str) -> dict[str, Any]:
        return {_text(k): v async for k, v in self.aclient.hscan_iter(collection)}

    def delete(self, key: str, collection: str) -> bool:
        return bool(self.client.hdel(collection, key))

    async def adelete(self, key: str, collection: str) -> bool:
        return bool(await self.aclient.hdel(collection, key))


def _redis_clients(inner: BaseKVStore) -> tuple[Any, Any] | None:
    """The (sync, async) clients of a LlamaIndex ``RedisKVStore`` that returns bytes.

    Recognised by shape (a class named ``RedisKVStore`` holding redis-py clients
    in ``_redis_client``/``_async_redis_client``), so a vendored copy works too.
    """
    if type(inner).__name__ != "RedisKVStore":
        return None
    client = getattr(inner, "_redis_client", None)
    aclient = getattr(inner, "_async_redis_client", None)
    if client is None or aclient is None:
        return None
    for c in (client, aclient):
        kwargs = getattr(getattr(c, "connection_pool", None), "connection_kwargs", {})
        if kwargs.get("decode_responses"):
            return None  # the client would try to decode binary values as text
    return client, aclient


def backend_for(inner: BaseKVStore, encoding: str) -> Backend:
    """The backend for ``inner``: raw bytes in Redis under ``"auto"``, else ``{"ct": ...}``."""
    if encoding == "auto":
        clients = _redis_clients(inner)
        if clients is not None:
            return RedisBytesBackend(*clients)
        return KVBackend(inner, raw=False)
    if encoding in ("base64", "raw"):
        return KVBackend(inner, raw=encoding == "raw")
    raise ValueError("encoding must be 'auto', 'base64' or 'raw'")
