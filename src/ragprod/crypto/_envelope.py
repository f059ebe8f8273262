"""The record format: version | key id | nonce | AES-256-GCM ciphertext and tag.

::

    offset  size  field
    0       1     format version (1)
    1       1     n = length of the key id
    2       n     key id (ASCII)
    2+n     12    random nonce
    14+n    ...   ciphertext, then the 16-byte GCM tag

The associated data is the header (version, key id) followed by a *context*:
length-prefixed fields naming where the record lives (store id, collection,
storage key; or the role of a sealed file). A record moved to another key,
collection, store or file, a replaced key id, a truncated or edited record all
fail authentication. Overhead: 30 bytes plus the key id (8 for generated ids).
"""

from __future__ import annotations

import functools
import os

from cryptography.exceptions import InvalidTag

from ragprod.crypto._keyring import Keyring
from ragprod.errors import DecryptionError

__all__ = [
    "NONCE_BYTES",
    "TAG_BYTES",
    "VERSION",
    "context",
    "key_id_of",
    "open_sealed",
    "seal",
    "seal_parts",
]

VERSION = 1
NONCE_BYTES = 12
TAG_BYTES = 16
_MAGIC = b"ragprod/1"


def context(*fields: str) -> bytes:
    """Encode context fields unambiguously (each length-prefixed) as associated data."""
    out = bytearray(_MAGIC)
    for field in fields:
        data = field.encode("utf-8", "surrogatepass")
        out += len(data).to_bytes(4, "big")
        out += data
    return bytes(out)


@functools.lru_cache(maxsize=256)
def _header(key_id: str) -> bytes:
    kid = key_id.encode("ascii")
    return bytes((VERSION, len(kid))) + kid


def seal(keyring: Keyring, plaintext: bytes, ctx: bytes) -> bytes:
    """Encrypt ``plaintext`` under the keyring's primary key, bound to ``ctx``."""
    key_id, aead = keyring._primary_aead()
    header = _header(key_id)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce + aead.encrypt(nonce, plaintext, header + ctx)


def seal_parts(keyring: Keyring, plaintext: bytes, ctx: bytes) -> tuple[bytes, bytes]:
    """Like :func:`seal`, as (header and nonce, ciphertext): no copy of large payloads."""
    key_id, aead = keyring._primary_aead()
    header = _header(key_id)
    nonce = os.urandom(NONCE_BYTES)
    return header + nonce, aead.encrypt(nonce, plaintext, header + ctx)


_PARSED: dict[bytes, str] = {}  # header bytes -> key id, for headers already validated


def _split(blob: bytes | memoryview) -> tuple[str, int]:
    """The key id and the offset of the nonce, or DecryptionError for a bad header."""
    size = len(blob)
    if size >= 2:
        start = 2 + blob[1]
        key_id = _PARSED.get(bytes(blob[:start]))
        if key_id is not None and size >= start + NONCE_BYTES + TAG_BYTES:
            return key_id, start
    if size < 2:
        raise DecryptionError("malformed")
    if blob[0] != VERSION:
        raise DecryptionError("unsupported_version")
    n = blob[1]
    start = 2 + n
    if n == 0 or size < start + NONCE_BYTES + TAG_BYTES:
        raise DecryptionError("malformed")
    try:
        key_id = bytes(blob[2:start]).decode("ascii")
    except UnicodeDecodeError as exc:
        raise DecryptionError("malformed") from exc
    if len(_PARSED) < 1024:
        _PARSED[bytes(blob[:start])] = key_id
    return key_id, start


def key_id_of(blob: bytes | memoryview) -> str:
    """The id of the key a sealed record names (without decrypting it)."""
    return _split(blob)[0]


def open_sealed(keyring: Keyring, blob: bytes | memoryview, ctx: bytes) -> bytes:
    """Decrypt what :func:`seal` produced under the same ``ctx``.

    Raises:
        DecryptionError: the record is malformed, of an unknown version, or
            fails authentication (wrong key, tampered bytes, other context).
        KeyNotFoundError: the keyring has no key with the record's key id.
    """
    key_id, start = _split(blob)
    aead = keyring._aead(key_id)
    nonce_end = start + NONCE_BYTES
    view = memoryview(blob) if len(blob) > 4096 else blob
    try:
        return aead.decrypt(view[start:nonce_end], view[nonce_end:], bytes(blob[:start]) + ctx)
    except InvalidTag as exc:
        raise DecryptionError("authentication_failed", key_id=key_id) from exc
