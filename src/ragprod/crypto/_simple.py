"""In-memory stores that keep plaintext in RAM and write only sealed files.

A sealed file is::

    b"ragprod-sealed\\n" | 2-byte label length | label | envelope

where the label (``"default/docstore"``) names the file's role and the
envelope (see ``_envelope``) seals the store's JSON with the label as
associated data: a docstore file renamed to index_store.json fails to open.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from llama_index.core.storage.kvstore.simple_kvstore import DATA_TYPE, SimpleKVStore
from llama_index.core.vector_stores.simple import SimpleVectorStore, SimpleVectorStoreData
from pydantic import PrivateAttr

from ragprod.crypto._envelope import context, key_id_of, open_sealed, seal_parts
from ragprod.crypto._files import FileSystem, atomic_write, read_bytes
from ragprod.crypto._keyring import Keyring
from ragprod.errors import DecryptionError

__all__ = [
    "MAGIC",
    "EncryptedSimpleKVStore",
    "EncryptedSimpleVectorStore",
    "is_sealed_file",
    "open_file",
    "rewrap_file",
    "seal_file",
]

MAGIC = b"ragprod-sealed\n"
_SEALED_DICT_KEY = "__ragprod_sealed__"


def _file_context(label: str) -> bytes:
    return context("file", label)


def seal_chunks(keyring: Keyring, label: str, data: bytes) -> list[bytes]:
    """The sealed-file bytes for ``data`` under ``label``, as chunks (no large copy)."""
    raw_label = label.encode("utf-8")
    head, body = seal_parts(keyring, data, _file_context(label))
    return [MAGIC + len(raw_label).to_bytes(2, "big") + raw_label + head, body]


def seal_bytes(keyring: Keyring, label: str, data: bytes) -> bytes:
    """The sealed-file bytes for ``data`` under ``label``."""
    return b"".join(seal_chunks(keyring, label, data))


def _parse(blob: bytes) -> tuple[str, memoryview]:
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 2:
        raise DecryptionError("malformed")
    at = len(MAGIC)
    n = int.from_bytes(blob[at : at + 2], "big")
    try:
        label = blob[at + 2 : at + 2 + n].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecryptionError("malformed") from exc
    return label, memoryview(blob)[at + 2 + n :]


def open_bytes(keyring: Keyring, label: str, blob: bytes) -> bytes:
    """Open sealed-file bytes, checking they were sealed for ``label``."""
    _, envelope = _parse(blob)
    return open_sealed(keyring, envelope, _file_context(label))


def seal_file(
    path: str,
    keyring: Keyring,
    label: str,
    data: bytes,
    fs: FileSystem | None = None,
) -> None:
    """Seal ``data`` and write it to ``path`` atomically, mode 0600."""
    atomic_write(path, seal_chunks(keyring, label, data), fs)


def open_file(path: str, keyring: Keyring, label: str, fs: FileSystem | None = None) -> bytes:
    """The plaintext of the sealed file at ``path``."""
    return open_bytes(keyring, label, read_bytes(path, fs))


def _sealed_blob(save_dict: Any) -> bytes:
    sealed = save_dict.get(_SEALED_DICT_KEY) if isinstance(save_dict, dict) else None
    if not isinstance(sealed, str):
        raise DecryptionError("malformed")
    try:
        return base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("malformed") from exc


def is_sealed_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` starts with the sealed-file magic."""
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def rewrap_file(path: str, keyring: Keyring) -> bool:
    """Re-seal the file at ``path`` under the primary key; False if it already was."""
    blob = read_bytes(path)
    label, envelope = _parse(blob)
    if key_id_of(envelope) == keyring.primary_id:
        return False
    plaintext = open_sealed(keyring, envelope, _file_context(label))
    atomic_write(path, seal_chunks(keyring, label, plaintext))
    return True


class EncryptedSimpleKVStore(SimpleKVStore):
    """A ``SimpleKVStore`` whose files are sealed: plaintext in RAM, ciphertext on disk.

    Reads and writes cost exactly what ``SimpleKVStore`` costs. ``persist``
    seals the whole JSON once (keys, values, hashes, metadata: nothing stays
    readable) and writes it atomically with mode 0600; ``to_dict`` returns a
    sealed dict too. Because it *is* a ``SimpleKVStore``, LlamaIndex's
    ``SimpleDocumentStore``, ``SimpleIndexStore``, ``IngestionCache`` and
    ``StorageContext.persist``/``to_dict`` all go through it.

    Args:
        keyring: the keys.
        data: initial plaintext collections.
        label: the file's role, bound into the ciphertext
            (``encrypted_storage_context`` uses ``"<store_id>/docstore"`` ...).

    Example:
        >>> import tempfile, os
        >>> ring = Keyring.generate()
        >>> store = EncryptedSimpleKVStore(ring, label="demo")
        >>> store.put("k", {"text": "secret"})
        >>> path = os.path.join(tempfile.mkdtemp(), "kv.json")
        >>> store.persist(path)
        >>> b"secret" in open(path, "rb").read()
        False
        >>> EncryptedSimpleKVStore.from_persist_path(path, keyring=ring, label="demo").get("k")
        {'text': 'secret'}
    """

    def __init__(
        self, keyring: Keyring, data: DATA_TYPE | None = None, *, label: str = "kvstore"
    ) -> None:
        super().__init__(data)
        self._keyring = keyring
        self._label = label

    @property
    def label(self) -> str:
        """The role bound into this store's sealed files."""
        return self._label

    def __repr__(self) -> str:
        return (
            f"EncryptedSimpleKVStore(label={self._label!r}, primary={self._keyring.primary_id!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError("encrypted stores are never pickled; use persist()")

    def _plaintext(self) -> bytes:
        return json.dumps(self._collections_mappings).encode("utf-8")

    def persist(self, persist_path: str, fs: FileSystem | None = None) -> None:
        """Seal every collection and write the file atomically with mode 0600."""
        seal_file(persist_path, self._keyring, self._label, self._plaintext(), fs)

    @classmethod
    def from_persist_path(  # type: ignore[override]
        cls,
        persist_path: str,
        fs: FileSystem | None = None,
        *,
        keyring: Keyring,
        label: str = "kvstore",
    ) -> EncryptedSimpleKVStore:
        """Load a file written by :meth:`persist` (same keyring and label)."""
        data = json.loads(open_file(persist_path, keyring, label, fs))
        return cls(keyring, data, label=label)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict holding the sealed store (nothing readable)."""
        sealed = seal_bytes(self._keyring, self._label, self._plaintext())
        return {_SEALED_DICT_KEY: base64.b64encode(sealed).decode("ascii")}

    @classmethod
    def from_dict(  # type: ignore[override]
        cls, save_dict: dict[str, Any], *, keyring: Keyring, label: str = "kvstore"
    ) -> EncryptedSimpleKVStore:
        """Load what :meth:`to_dict` returned."""
        blob = _sealed_blob(save_dict)
        return cls(keyring, json.loads(open_bytes(keyring, label, blob)), label=label)


class EncryptedSimpleVectorStore(SimpleVectorStore):
    """A ``SimpleVectorStore`` whose persisted file is sealed.

    Its file holds embeddings, node ids and a copy of node metadata (for
    filters): all of it is sealed on ``persist``, atomically with mode 0600.
    In memory it is an ordinary ``SimpleVectorStore``.
    """

    _keyring: Keyring = PrivateAttr()
    _label: str = PrivateAttr()

    def __init__(
        self,
        keyring: Keyring,
        data: SimpleVectorStoreData | None = None,
        fs: FileSystem | None = None,
        *,
        label: str = "vector_store",
        **kwargs: Any,
    ) -> None:
        super().__init__(data=data, fs=fs, **kwargs)
        self._keyring = keyring
        self._label = label

    def __getstate__(self) -> dict[Any, Any]:
        raise TypeError("encrypted stores are never pickled; use persist()")

    def persist(
        self,
        persist_path: str = os.path.join("./storage", "default__vector_store.json"),
        fs: FileSystem | None = None,
    ) -> None:
        """Seal the store and write it atomically with mode 0600."""
        data = json.dumps(self.data.to_dict()).encode("utf-8")
        seal_file(persist_path, self._keyring, self._label, data, fs)

    @classmethod
    def from_persist_path(  # type: ignore[override]
        cls,
        persist_path: str,
        fs: FileSystem | None = None,
        *,
        keyring: Keyring,
        label: str = "vector_store",
    ) -> EncryptedSimpleVectorStore:
        """Load a file written by :meth:`persist`."""
        raw = json.loads(open_file(persist_path, keyring, label, fs))
        return cls(keyring, SimpleVectorStoreData.from_dict(raw), fs=fs, label=label)

    @classmethod
    def from_dict(  # type: ignore[override]
        cls, data: dict[str, Any], *, keyring: Keyring, label: str = "vector_store", **kwargs: Any
    ) -> EncryptedSimpleVectorStore:
        """Load what :meth:`to_dict` returned."""
        raw = json.loads(open_bytes(keyring, label, _sealed_blob(data)))
        return cls(keyring, SimpleVectorStoreData.from_dict(raw), label=label)

    def to_dict(self, **kwargs: Any) -> dict[str, Any]:
        """A JSON-safe dict holding the sealed store."""
        data = json.dumps(self.data.to_dict()).encode("utf-8")
        sealed = seal_bytes(self._keyring, self._label, data)
        return {_SEALED_DICT_KEY: base64.b64encode(sealed).decode("ascii")}
