"""``rewrap()``: move every record to the keyring's primary key."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragprod.crypto._keyring import Keyring
from ragprod.crypto._kvstore import EncryptedKVStore
from ragprod.crypto._simple import is_sealed_file, rewrap_file

__all__ = ["DEFAULT_COLLECTIONS", "RewrapProgress", "rewrap"]

#: Collections LlamaIndex's docstore, index store and ingestion cache use by default.
DEFAULT_COLLECTIONS = (
    "docstore/data",
    "docstore/metadata",
    "docstore/ref_doc_info",
    "index_store/data",
    "llama_cache",
)


@dataclass(frozen=True, slots=True)
class RewrapProgress:
    """Counts so far; passed to ``progress`` after each batch and returned at the end.

    Attributes:
        collection: the collection (or file) just processed.
        scanned: records (or files) looked at so far.
        rewrapped: records re-sealed under the primary key so far.
        current: records that already were under the primary key.
    """

    collection: str
    scanned: int
    rewrapped: int
    current: int


def rewrap(
    target: EncryptedKVStore | str | os.PathLike[str],
    keyring: Keyring | None = None,
    *,
    collections: Iterable[str] | None = None,
    batch_size: int = 500,
    progress: Callable[[RewrapProgress], Any] | None = None,
) -> RewrapProgress:
    """Re-encrypt every record under the keyring's primary key.

    Run it after :meth:`Keyring.rotate`; once it returns, older keys can be
    :meth:`~Keyring.retire`-d. It is idempotent and resumable: records already
    under the primary are skipped, and each record is replaced whole (one put
    per record, batched), so a crash leaves every record readable under the
    old or the new key, and running it again finishes the job.

    Writes that race with a rewrap may be overwritten by the older value it
    read; pause writers of the same store, or rewrap during a quiet period.

    Args:
        target: an :class:`EncryptedKVStore`, or a directory (or one file) of
            sealed files written by ``encrypted_storage_context`` stores.
        keyring: the keyring (required for files; for a store, the store's own
            keyring by default).
        collections: the collections to visit in a store; by default the ones
            this store object has touched plus LlamaIndex's default collections.
        batch_size: records per batched write.
        progress: called with a :class:`RewrapProgress` after each batch.

    Returns:
        The final :class:`RewrapProgress`.

    Raises:
        DecryptionError, KeyNotFoundError: a record cannot be opened (nothing
            is written for it; records before it are already moved).

    Example:
        >>> from llama_index.core.storage.kvstore import SimpleKVStore
        >>> ring = Keyring.generate()
        >>> store = EncryptedKVStore(SimpleKVStore(), ring)
        >>> store.put("a", {"n": 1}, collection="docstore/data")
        >>> _ = ring.rotate()
        >>> rewrap(store).rewrapped
        1
    """
    if isinstance(target, EncryptedKVStore):
        store = target
        if keyring is not None and keyring is not store.keyring:
            store = EncryptedKVStore(
                store.kvstore,
                keyring,
                store_id=store.store_id,
                encrypt_keys=store._encrypt_keys,
                encoding=store._encoding,
            )
        names = (
            list(dict.fromkeys(collections))
            if collections is not None
            else sorted(set(DEFAULT_COLLECTIONS) | store.collections_seen)
        )
        return _rewrap_store(store, names, max(1, batch_size), progress)
    if keyring is None:
        raise TypeError("rewrap of files needs keyring=")
    return _rewrap_files(Path(target), keyring, progress)


def _rewrap_store(
    store: EncryptedKVStore,
    collections: list[str],
    batch_size: int,
    progress: Callable[[RewrapProgress], Any] | None,
) -> RewrapProgress:
    scanned = rewrapped = current = 0
    state = RewrapProgress("", 0, 0, 0)
    for collection in collections:
        pending: list[tuple[str, dict[str, Any]]] = []
        records = list(store._raw_records(collection).items())
        for n, (skey, stored) in enumerate(records, 1):
            scanned += 1
            fresh = store._rewrap_record(skey, stored, collection)
            if fresh is None:
                current += 1
            else:
                pending.append((skey, fresh))
            if len(pending) >= batch_size or (n == len(records) and pending):
                store._store_all(pending, collection, batch_size)
                rewrapped += len(pending)
                pending = []
                state = RewrapProgress(collection, scanned, rewrapped, current)
                if progress is not None:
                    progress(state)
        state = RewrapProgress(collection, scanned, rewrapped, current)
    return state


def _rewrap_files(
    root: Path, keyring: Keyring, progress: Callable[[RewrapProgress], Any] | None
) -> RewrapProgress:
    files = [root] if root.is_file() else sorted(p for p in root.iterdir() if p.is_file())
    scanned = rewrapped = current = 0
    state = RewrapProgress(str(root), 0, 0, 0)
    for path in files:
        if not is_sealed_file(path):
            continue
        scanned += 1
        if rewrap_file(str(path), keyring):
            rewrapped += 1
        else:
            current += 1
        state = RewrapProgress(path.name, scanned, rewrapped, current)
        if progress is not None:
            progress(state)
    return state
