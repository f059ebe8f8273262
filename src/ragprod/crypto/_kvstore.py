"""``EncryptedKVStore``: authenticated encryption under any LlamaIndex ``BaseKVStore``."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Sequence
from typing import Any, Literal

import structlog
from llama_index.core.storage.kvstore.simple_kvstore import SimpleKVStore
from llama_index.core.storage.kvstore.types import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_COLLECTION,
    BaseKVStore,
)

from ragprod.crypto._backends import backend_for
from ragprod.crypto._envelope import context, key_id_of, open_sealed, seal
from ragprod.crypto._files import FileSystem, atomic_write, read_bytes
from ragprod.crypto._keyring import Keyring
from ragprod.errors import CryptoError, DecryptionError
from ragprod.metrics import RagMetrics

__all__ = ["EncryptedKVStore"]

_SKEY_CACHE = 65536  # pseudonymized keys remembered per store (about 10 MB at most)

_log = structlog.get_logger("ragprod.crypto")
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads


class EncryptedKVStore(BaseKVStore):
    """A ``BaseKVStore`` that seals every value with AES-256-GCM before the inner store sees it.

    Drop it in wherever LlamaIndex takes a key-value store: a
    ``KVDocumentStore``, ``KVIndexStore``, ``IngestionCache`` or a
    ``*DocumentStore.from_...`` helper. Each value becomes one record
    ``{"ct": <envelope>}`` (see ``ragprod.crypto._envelope``) whose associated
    data binds ``store_id``, the collection and the storage key, so a record
    copied to another key, collection or store fails to decrypt.

    With ``encrypt_keys=True`` (the default) storage keys are pseudonymized:
    the inner store sees ``HMAC-SHA256(index key, store_id, collection, key)``
    (32 hex characters), and the real key travels inside the ciphertext, so
    lookups stay O(1) and ``get_all`` still returns real keys. Document ids
    (file paths with ``filename_as_id``) and ingestion-cache keys (hashes of
    node text) then never reach the backend. Collection names stay readable.

    Batched ``put_all``/``aput_all`` hand the whole batch to the inner store's
    own batching (a Redis pipeline, one SQL statement); where the inner store
    has none, or its batch method raises ``NotImplementedError`` (LlamaIndex's
    default for ``batch_size > 1``), puts are issued one by one (sync) or
    ``batch_size`` at a time concurrently (async).

    Args:
        kvstore: the inner store (``SimpleKVStore``, ``RedisKVStore``,
            ``PostgresKVStore``, ...). Its own errors (Redis down ...) pass
            through unchanged.
        keyring: the keys; the primary seals, any key in it opens.
        store_id: names this store in the associated data; give each logical
            store (tenant, application) its own.
        encrypt_keys: pseudonymize storage keys (see above).
        encoding: how the envelope reaches the inner store. ``"auto"`` (the
            default): raw bytes in the Redis hash for LlamaIndex's
            ``RedisKVStore`` (same commands and layout, no base64, batched
            pipelines sync and async), ``{"ct": <base64>}`` for every other
            store. ``"base64"`` forces the JSON-safe form; ``"raw"`` stores
            ``{"ct": bytes}`` for stores that keep Python objects.
        metrics: where to count decryption failures
            (``ragprod_crypto_decrypt_failures_total{reason}``).

    Raises (on reads):
        DecryptionError: a record is not a ragprod envelope or fails
            authentication (``reason`` says which).
        KeyNotFoundError: a record names a key the keyring no longer has.

    Example:
        >>> from llama_index.core.storage.kvstore import SimpleKVStore
        >>> store = EncryptedKVStore(SimpleKVStore(), Keyring.generate())
        >>> store.put("doc-1", {"text": "secret"})
        >>> store.get("doc-1")
        {'text': 'secret'}
        >>> "secret" in str(store.kvstore.get_all())
        False
    """

    def __init__(
        self,
        kvstore: BaseKVStore,
        keyring: Keyring,
        *,
        store_id: str = "default",
        encrypt_keys: bool = True,
        encoding: Literal["auto", "base64", "raw"] = "auto",
        metrics: RagMetrics | None = None,
    ) -> None:
        self._inner = kvstore
        self._backend = backend_for(kvstore, encoding)
        self._encoding = encoding
        self._keyring = keyring
        self._store_id = store_id
        self._encrypt_keys = encrypt_keys
        self._collections: set[str] = set()
        self._ctx_prefix: dict[str, bytes] = {}
        self._mac_prefix: dict[str, Any] = {}
        self._skeys: dict[tuple[str, str], str] = {}
        self._failures = (metrics or RagMetrics()).counter(
            "ragprod_crypto_decrypt_failures_total",
            "Records that failed to decrypt, by reason.",
            ["reason"],
        )

    # ----- introspection --------------------------------------------------
    @property
    def kvstore(self) -> BaseKVStore:
        """The inner store (it only ever holds ciphertext)."""
        return self._inner

    @property
    def keyring(self) -> Keyring:
        """The keyring in use."""
        return self._keyring

    @property
    def store_id(self) -> str:
        """The store id bound into every record."""
        return self._store_id

    @property
    def encoding(self) -> str:
        """How records reach the inner store: ``"redis-bytes"``, ``"base64"`` or ``"raw"``."""
        return self._backend.name

    @property
    def collections_seen(self) -> frozenset[str]:
        """Collections this object has read or written (what :func:`rewrap` visits by default)."""
        return frozenset(self._collections)

    def __repr__(self) -> str:
        return (
            f"EncryptedKVStore({type(self._inner).__name__}, store_id={self._store_id!r}, "
            f"primary={self._keyring.primary_id!r}, encrypt_keys={self._encrypt_keys}, "
            f"encoding={self._backend.name!r})"
        )

    def __reduce__(self) -> Any:
        raise TypeError("encrypted stores are never pickled")

    # ----- the codec (shared by every sync and async method) -------------
    def storage_key(self, key: str, collection: str = DEFAULT_COLLECTION) -> str:
        """The key the inner store sees for ``key`` (its HMAC when keys are encrypted)."""
        if not self._encrypt_keys:
            return key
        cached = self._skeys.get((collection, key))
        if cached is not None:
            return cached
        base = self._mac_prefix.get(collection)
        if base is None:
            base = hmac.new(
                self._keyring._index_secret(),
                context(self._store_id, collection),
                hashlib.sha256,
            )
            self._mac_prefix[collection] = base
            self._collections.add(collection)
        mac = base.copy()
        mac.update(key.encode("utf-8", "surrogatepass"))
        skey = mac.hexdigest()[:32]
        if len(self._skeys) >= _SKEY_CACHE:
            self._skeys.clear()
        self._skeys[(collection, key)] = skey
        return skey

    def _context(self, collection: str, skey: str) -> bytes:
        prefix = self._ctx_prefix.get(collection)
        if prefix is None:
            prefix = context(self._store_id, collection)
            self._ctx_prefix[collection] = prefix
            self._collections.add(collection)
        data = skey.encode("utf-8", "surrogatepass")
        return prefix + len(data).to_bytes(4, "big") + data

    def _encode(self, key: str, val: dict[str, Any], collection: str) -> tuple[str, Any]:
        skey = self.storage_key(key, collection)
        plaintext = _dumps([key, val] if self._encrypt_keys else val).encode(
            "utf-8", "surrogatepass"
        )
        blob = seal(self._keyring, plaintext, self._context(collection, skey))
        return skey, self._backend.wrap(blob)

    def _count(self, exc: CryptoError) -> None:
        reason = getattr(exc, "reason", "key_not_found")
        self._failures.labels(reason=reason).inc()
        _log.warning(
            "ragprod.crypto.decrypt_failed",
            reason=reason,
            key_id=getattr(exc, "key_id", None),
            store_id=self._store_id,
        )

    def _open(self, skey: str, stored: Any, collection: str) -> tuple[bytes, bytes, bytes]:
        """(plaintext, envelope, context) of a stored record; counts and re-raises failures."""
        try:
            blob = self._backend.unwrap(stored)
            ctx = self._context(collection, skey)
            return open_sealed(self._keyring, blob, ctx), blob, ctx
        except CryptoError as exc:
            self._count(exc)
            raise

    def _decode(self, skey: str, stored: Any, collection: str) -> tuple[str, dict[str, Any]]:
        value = _loads(self._open(skey, stored, collection)[0])
        if self._encrypt_keys:
            if type(value) is list and len(value) == 2:
                return value[0], value[1]
        elif type(value) is dict:
            return skey, value
        exc = DecryptionError("malformed")  # written with the other encrypt_keys setting
        self._count(exc)
        raise exc

    def _encode_all(
        self, kv_pairs: Sequence[tuple[str, dict[str, Any]]], collection: str
    ) -> list[tuple[str, Any]]:
        return [self._encode(key, val, collection) for key, val in kv_pairs]

    def _decode_all(self, stored: dict[str, Any], collection: str) -> dict[str, dict[str, Any]]:
        return dict(self._decode(skey, val, collection) for skey, val in stored.items())

    # ----- BaseKVStore ----------------------------------------------------
    def put(self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION) -> None:
        """Seal ``val`` and store it under ``key`` (pseudonymized) in ``collection``."""
        skey, record = self._encode(key, val, collection)
        self._backend.put(skey, record, collection)

    async def aput(
        self, key: str, val: dict[str, Any], collection: str = DEFAULT_COLLECTION
    ) -> None:
        """Async :meth:`put`."""
        skey, record = self._encode(key, val, collection)
        await self._backend.aput(skey, record, collection)

    def put_all(
        self,
        kv_pairs: list[tuple[str, dict[str, Any]]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Seal every pair, then store them with the inner store's batching."""
        self._backend.put_all(self._encode_all(kv_pairs, collection), collection, batch_size)

    async def aput_all(
        self,
        kv_pairs: list[tuple[str, dict[str, Any]]],
        collection: str = DEFAULT_COLLECTION,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        """Async :meth:`put_all`; ``batch_size`` concurrent puts where the inner has no batch."""
        records = self._encode_all(kv_pairs, collection)
        await self._backend.aput_all(records, collection, batch_size)

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        """The value stored under ``key``, decrypted, or None."""
        skey = self.storage_key(key, collection)
        stored = self._backend.get(skey, collection)
        return None if stored is None else self._decode(skey, stored, collection)[1]

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict[str, Any] | None:
        """Async :meth:`get`."""
        skey = self.storage_key(key, collection)
        stored = await self._backend.aget(skey, collection)
        return None if stored is None else self._decode(skey, stored, collection)[1]

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        """Every value in ``collection``, decrypted, under its real key."""
        return self._decode_all(self._backend.get_all(collection), collection)

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict[str, Any]]:
        """Async :meth:`get_all`."""
        return self._decode_all(await self._backend.aget_all(collection), collection)

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        """Delete ``key``; True if it existed."""
        return self._backend.delete(self.storage_key(key, collection), collection)

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        """Async :meth:`delete`."""
        return await self._backend.adelete(self.storage_key(key, collection), collection)

    # ----- maintenance (used by rewrap) ------------------------------------
    def _raw_records(self, collection: str) -> dict[str, Any]:
        """Every stored record of ``collection`` as the inner store holds it."""
        return self._backend.get_all(collection)

    def _key_id(self, stored: Any) -> str:
        return key_id_of(self._backend.unwrap(stored))

    def _rewrap_record(self, skey: str, stored: Any, collection: str) -> Any | None:
        """The record re-sealed under the primary key, or None if it already is."""
        if self._key_id(stored) == self._keyring.primary_id:
            return None
        plaintext, _, ctx = self._open(skey, stored, collection)
        return self._backend.wrap(seal(self._keyring, plaintext, ctx))

    def _store_all(self, records: list[tuple[str, Any]], collection: str, batch_size: int) -> None:
        self._backend.put_all(records, collection, batch_size)

    # ----- file persistence for a wrapped SimpleKVStore --------------------
    def persist(self, persist_path: str, fs: FileSystem | None = None) -> None:
        """Write the inner ``SimpleKVStore`` (ciphertext only) atomically with mode 0600.

        Other inner stores persist themselves (Redis, PostgreSQL): this then
        delegates to the inner ``persist`` if it has one.
        """
        if isinstance(self._inner, SimpleKVStore) and self._backend.name == "base64":
            atomic_write(persist_path, _dumps(self._inner.to_dict()).encode("utf-8"), fs)
        elif hasattr(self._inner, "persist"):
            self._inner.persist(persist_path, fs=fs)

    @classmethod
    def from_persist_path(
        cls,
        persist_path: str | os.PathLike[str],
        keyring: Keyring,
        *,
        fs: FileSystem | None = None,
        **kwargs: Any,
    ) -> EncryptedKVStore:
        """Load what :meth:`persist` wrote over a ``SimpleKVStore``."""
        data = _loads(read_bytes(os.fspath(persist_path), fs))
        return cls(SimpleKVStore(data), keyring, **kwargs)
