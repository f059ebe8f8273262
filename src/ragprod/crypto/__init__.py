"""Authenticated encryption at rest under any LlamaIndex key-value store.

``Keyring`` holds AES-256-GCM keys with short ids (one primary seals, the
others still open); ``EncryptedKVStore`` seals every value and pseudonymizes
every key of any ``BaseKVStore``; ``encrypted_storage_context()`` builds a
``StorageContext`` whose docstore, index store and vector file are encrypted;
``rewrap()`` moves records to the primary key after a rotation, and
``Keyring.retire()`` shreds. See docs/crypto.md.

Example:
    >>> from llama_index.core.storage.kvstore import SimpleKVStore
    >>> from ragprod.crypto import EncryptedKVStore, Keyring
    >>> store = EncryptedKVStore(SimpleKVStore(), Keyring.generate())
    >>> store.put("id", {"text": "hi"})
    >>> store.get("id")
    {'text': 'hi'}
"""

from ragprod.crypto._context import encrypted_ingestion_cache, encrypted_storage_context
from ragprod.crypto._keyring import DEFAULT_ENV_VAR, KeyProvider, Keyring, LocalKeyProvider
from ragprod.crypto._kvstore import EncryptedKVStore
from ragprod.crypto._rewrap import DEFAULT_COLLECTIONS, RewrapProgress, rewrap
from ragprod.crypto._simple import EncryptedSimpleKVStore, EncryptedSimpleVectorStore

__all__ = [
    "DEFAULT_COLLECTIONS",
    "DEFAULT_ENV_VAR",
    "EncryptedKVStore",
    "EncryptedSimpleKVStore",
    "EncryptedSimpleVectorStore",
    "KeyProvider",
    "Keyring",
    "LocalKeyProvider",
    "RewrapProgress",
    "encrypted_ingestion_cache",
    "encrypted_storage_context",
    "rewrap",
]
