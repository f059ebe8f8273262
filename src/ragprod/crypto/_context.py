"""``encrypted_storage_context()`` and ``encrypted_ingestion_cache()``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llama_index.core.constants import (
    DOC_STORE_KEY,
    GRAPH_STORE_KEY,
    INDEX_STORE_KEY,
    VECTOR_STORE_KEY,
)
from llama_index.core.graph_stores.simple import SimpleGraphStore
from llama_index.core.ingestion.cache import DEFAULT_CACHE_NAME, IngestionCache
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.docstore.types import DEFAULT_PERSIST_FNAME as DOCSTORE_FNAME
from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore
from llama_index.core.storage.index_store.simple_index_store import SimpleIndexStore
from llama_index.core.storage.index_store.types import DEFAULT_PERSIST_FNAME as INDEX_FNAME
from llama_index.core.storage.kvstore.types import BaseKVStore
from llama_index.core.storage.storage_context import StorageContext
from llama_index.core.vector_stores.simple import (
    DEFAULT_VECTOR_STORE,
    NAMESPACE_SEP,
)
from llama_index.core.vector_stores.types import BasePydanticVectorStore

from ragprod.crypto._docstore import FixedKVDocumentStore, FixedSimpleDocumentStore
from ragprod.crypto._files import FileSystem
from ragprod.crypto._keyring import Keyring
from ragprod.crypto._kvstore import EncryptedKVStore
from ragprod.crypto._simple import EncryptedSimpleKVStore, EncryptedSimpleVectorStore
from ragprod.metrics import RagMetrics

__all__ = ["encrypted_ingestion_cache", "encrypted_storage_context"]

VECTOR_FNAME = "vector_store.json"


def _exists(path: str, fs: FileSystem | None) -> bool:
    return bool(fs.exists(path)) if fs is not None else os.path.exists(path)


def encrypted_storage_context(
    keyring: Keyring,
    *,
    kvstore: BaseKVStore | None = None,
    persist_dir: str | os.PathLike[str] | None = None,
    store_id: str = "default",
    namespace: str | None = None,
    vector_store: BasePydanticVectorStore | None = None,
    encrypt_keys: bool = True,
    batch_size: int | None = None,
    fs: FileSystem | None = None,
    metrics: RagMetrics | None = None,
    from_dict: dict[str, Any] | None = None,
) -> StorageContext:
    """A LlamaIndex ``StorageContext`` whose docstore, index store and vectors are encrypted.

    Two shapes:

    * **file-backed** (``kvstore=None``): docstore and index store are
      :class:`EncryptedSimpleKVStore` stores and the vector store an
      :class:`EncryptedSimpleVectorStore`: plaintext in RAM, and
      ``storage_context.persist(persist_dir)`` writes only sealed files,
      atomically with mode 0600. When ``persist_dir`` already holds them they
      are loaded (and decrypted) here; ``StorageContext.from_defaults`` cannot
      read them.
    * **shared store** (``kvstore=RedisKVStore(...)``, ``PostgresKVStore``,
      ...): docstore and index store live in the inner store through one
      :class:`EncryptedKVStore` (values sealed, keys pseudonymized); the
      vector store is still a sealed ``SimpleVectorStore`` unless you pass
      ``vector_store``.

    A ``vector_store`` you pass is used as is: if it stores node text in its
    payload (most external ones do), that text is *not* encrypted by this
    function; see docs/crypto.md for the mitigation.

    Args:
        keyring: the keys.
        kvstore: a shared inner store, or None for the file-backed shape.
        persist_dir: where sealed files are loaded from (if present).
        store_id: bound into every record and file; one per application or tenant.
        namespace: prefix of the docstore/index-store collections in ``kvstore``
            (``"<namespace>/docstore/data"`` ...); LlamaIndex's defaults if None.
        vector_store: your own vector store (used unchanged).
        encrypt_keys: pseudonymize storage keys in ``kvstore``.
        batch_size: the docstore's batch size for ``put_all`` (100 over
            ``kvstore``; 1 for the file-backed shape, whose ``SimpleKVStore`` has no batching).
        fs: an fsspec filesystem for the file-backed shape.
        metrics: passed to the :class:`EncryptedKVStore`.
        from_dict: what ``StorageContext.to_dict()`` returned for a file-backed
            encrypted context (its parts are sealed); loads it back.

    Raises:
        DecryptionError, KeyNotFoundError: a persisted file cannot be opened
            with ``keyring`` (wrong keyring, shredded key, swapped or edited file).

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from ragprod.testing import HashEmbedding
        >>> ctx = encrypted_storage_context(Keyring.generate())
        >>> index = VectorStoreIndex.from_documents(
        ...     [Document(text="hello")], storage_context=ctx, embed_model=HashEmbedding())
        >>> len(ctx.docstore.docs)
        1
    """
    base = os.fspath(persist_dir) if persist_dir is not None else None

    def path(fname: str) -> str | None:
        return str(Path(base) / fname) if base is not None else None

    saved = from_dict or {}

    def load_kv(fname: str, role: str) -> EncryptedSimpleKVStore:
        label = f"{store_id}/{role}"
        key = {"docstore": DOC_STORE_KEY, "index_store": INDEX_STORE_KEY}[role]
        if key in saved:
            return EncryptedSimpleKVStore.from_dict(saved[key], keyring=keyring, label=label)
        where = path(fname)
        if where is not None and _exists(where, fs):
            return EncryptedSimpleKVStore.from_persist_path(where, fs, keyring=keyring, label=label)
        return EncryptedSimpleKVStore(keyring, label=label)

    docstore: KVDocumentStore
    index_store: KVIndexStore
    if kvstore is None:
        docstore = FixedSimpleDocumentStore(
            load_kv(DOCSTORE_FNAME, "docstore"), batch_size=batch_size or 1
        )
        index_store = SimpleIndexStore(load_kv(INDEX_FNAME, "index_store"))
    else:
        encrypted = EncryptedKVStore(
            kvstore, keyring, store_id=store_id, encrypt_keys=encrypt_keys, metrics=metrics
        )
        prefix = f"{namespace}/" if namespace else ""
        docstore = FixedKVDocumentStore(
            encrypted, namespace=f"{prefix}docstore", batch_size=batch_size or 100
        )
        index_store = KVIndexStore(encrypted, namespace=f"{prefix}index_store")

    if vector_store is None:
        label = f"{store_id}/vector_store/{DEFAULT_VECTOR_STORE}"
        where = path(f"{DEFAULT_VECTOR_STORE}{NAMESPACE_SEP}{VECTOR_FNAME}")
        sealed_vectors = saved.get(VECTOR_STORE_KEY, {}).get(DEFAULT_VECTOR_STORE)
        if sealed_vectors is not None:
            vector_store = EncryptedSimpleVectorStore.from_dict(
                sealed_vectors, keyring=keyring, label=label
            )
        elif where is not None and _exists(where, fs):
            vector_store = EncryptedSimpleVectorStore.from_persist_path(
                where, fs, keyring=keyring, label=label
            )
        else:
            vector_store = EncryptedSimpleVectorStore(keyring, fs=fs, label=label)

    graph_path = path("graph_store.json")
    if saved.get(GRAPH_STORE_KEY) is not None:
        graph_store = SimpleGraphStore.from_dict(saved[GRAPH_STORE_KEY])
    elif graph_path is not None and _exists(graph_path, fs):
        graph_store = SimpleGraphStore.from_persist_path(graph_path, fs=fs)
    else:
        graph_store = SimpleGraphStore()
    return StorageContext(
        docstore=docstore,
        index_store=index_store,
        vector_stores={DEFAULT_VECTOR_STORE: vector_store},
        graph_store=graph_store,
    )


def encrypted_ingestion_cache(
    keyring: Keyring,
    *,
    kvstore: BaseKVStore | None = None,
    persist_path: str | os.PathLike[str] | None = None,
    store_id: str = "default",
    collection: str = DEFAULT_CACHE_NAME,
    fs: FileSystem | None = None,
) -> IngestionCache:
    """An ``IngestionCache`` whose cached nodes and cache keys are encrypted.

    The cache holds whole nodes (text and metadata) under keys that are hashes
    of node text, so both are sealed: over ``kvstore`` through an
    :class:`EncryptedKVStore` (keys pseudonymized), else in an
    :class:`EncryptedSimpleKVStore` that ``IngestionCache.persist(path)``
    writes sealed; ``persist_path`` loads such a file if it exists.

    Example:
        >>> cache = encrypted_ingestion_cache(Keyring.generate())
        >>> type(cache.cache).__name__
        'EncryptedSimpleKVStore'
    """
    label = f"{store_id}/ingestion_cache"
    store: BaseKVStore
    if kvstore is not None:
        store = EncryptedKVStore(kvstore, keyring, store_id=store_id)
    elif persist_path is not None and _exists(os.fspath(persist_path), fs):
        store = EncryptedSimpleKVStore.from_persist_path(
            os.fspath(persist_path), fs, keyring=keyring, label=label
        )
    else:
        store = EncryptedSimpleKVStore(keyring, label=label)
    return IngestionCache(cache=store, collection=collection)
