"""Keyrings: AES-256-GCM key versions with short ids, one primary, never printed."""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ragprod.errors import ConfigurationError, DecryptionError, KeyNotFoundError

__all__ = ["DEFAULT_ENV_VAR", "KeyProvider", "Keyring", "LocalKeyProvider"]

#: The environment variable :meth:`Keyring.from_env` reads by default.
DEFAULT_ENV_VAR = "RAGPROD_ENCRYPTION_KEYS"

KEY_BYTES = 32
_KEY_ID = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_FORMAT = "ragprod-keyring"


def _b64decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as exc:
        raise ConfigurationError(f"{what} is not valid base64") from exc


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(secret: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info).derive(secret)


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys with a key-encryption key (envelope encryption).

    This is the seam for a KMS: implement ``wrap``/``unwrap`` with AWS KMS
    ``Encrypt``/``Decrypt``, GCP KMS or Vault transit, and pass the provider to
    :meth:`Keyring.to_json` and :meth:`Keyring.from_json`. The keyring then
    holds only wrapped data keys at rest; ``context`` is bound as associated
    data (AWS calls it the encryption context), so a wrapped key cannot be
    moved to another keyring or key id.
    """

    def wrap(self, data_key: bytes, *, context: str) -> bytes:
        """Encrypt ``data_key`` under the key-encryption key."""
        ...

    def unwrap(self, wrapped: bytes, *, context: str) -> bytes:
        """Decrypt a wrapped key; raise :class:`~ragprod.errors.DecryptionError` on failure."""
        ...


class LocalKeyProvider:
    """A :class:`KeyProvider` holding its key-encryption key in process memory.

    Args:
        kek: 32 random bytes (``os.urandom(32)``), kept apart from the keyring
            file (a different secret store, an HSM-backed file, ...).

    Example:
        >>> import os
        >>> provider = LocalKeyProvider(os.urandom(32))
        >>> ring = Keyring.generate()
        >>> Keyring.from_json(ring.to_json(provider=provider), provider=provider).primary_id \
== ring.primary_id
        True
    """

    def __init__(self, kek: bytes) -> None:
        if len(kek) != KEY_BYTES:
            raise ConfigurationError("a key-encryption key must be 32 bytes")
        self._aead = AESGCM(kek)

    def __repr__(self) -> str:
        return "LocalKeyProvider(kek=<hidden>)"

    def __reduce__(self) -> Any:
        raise TypeError("key providers are never pickled")

    def wrap(self, data_key: bytes, *, context: str) -> bytes:
        """Encrypt ``data_key``; the result is nonce | ciphertext | tag."""
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, data_key, context.encode("utf-8"))

    def unwrap(self, wrapped: bytes, *, context: str) -> bytes:
        """Decrypt what :meth:`wrap` produced under the same ``context``."""
        if len(wrapped) < 12 + 16:
            raise DecryptionError("malformed")
        try:
            return self._aead.decrypt(wrapped[:12], wrapped[12:], context.encode("utf-8"))
        except InvalidTag as exc:
            raise DecryptionError("authentication_failed") from exc


class Keyring:
    """AES-256-GCM key versions, each with a short id; the primary one encrypts.

    Every record names the id of the key that sealed it, so older keys keep
    decrypting after :meth:`rotate` adds a new primary; :func:`~ragprod.crypto.rewrap`
    then moves every record to the primary and :meth:`retire` removes an old
    key. Removing a key is crypto-shredding: every record sealed under it is
    unreadable from then on (reads raise :class:`~ragprod.errors.KeyNotFoundError`).

    A keyring also holds one *index key*, an HMAC key used to pseudonymize
    storage keys and kept across rotations so lookups keep working.

    Key material never appears in ``repr``, logs or error texts; keyrings refuse
    to be pickled. :meth:`to_json` is the one explicit way to export it.

    Args:
        keys: key id -> 32-byte key, in age order (oldest first).
        primary: the id of the key that encrypts; the newest by default.
        index_key: 32-byte HMAC key for storage keys; derived from the first
            key when omitted (then keep that key, or export with :meth:`to_json`,
            which always writes the index key explicitly).

    Raises:
        ConfigurationError: a key is not 32 bytes, an id is not 1-32 characters
            of ``[A-Za-z0-9_.-]``, there are no keys, or ``primary`` is unknown.

    Example:
        >>> ring = Keyring.generate()
        >>> old = ring.primary_id
        >>> new = ring.rotate()
        >>> ring.key_ids == (old, new) and ring.primary_id == new
        True
        >>> "key_ids" in repr(ring)
        True
    """

    def __init__(
        self,
        keys: Mapping[str, bytes],
        *,
        primary: str | None = None,
        index_key: bytes | None = None,
    ) -> None:
        problems = []
        if not keys:
            problems.append("a keyring needs at least one key")
        for key_id, secret in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.match(key_id):
                problems.append("key ids must be 1-32 characters of [A-Za-z0-9_.-]")
            if not isinstance(secret, bytes | bytearray) or len(secret) != KEY_BYTES:
                problems.append(f"key {key_id!r} must be {KEY_BYTES} bytes")
        if index_key is not None and len(index_key) != KEY_BYTES:
            problems.append(f"the index key must be {KEY_BYTES} bytes")
        ids = list(keys)
        chosen = primary if primary is not None else (ids[-1] if ids else None)
        if ids and chosen not in keys:
            problems.append(f"primary key id {chosen!r} is not in the keyring")
        if problems:
            raise ConfigurationError(problems)
        assert chosen is not None
        self._lock = threading.Lock()
        self._secrets: dict[str, bytes] = {k: bytes(v) for k, v in keys.items()}
        self._aeads: dict[str, AESGCM] = {k: AESGCM(v) for k, v in self._secrets.items()}
        self._primary = chosen
        self._index_key = (
            bytes(index_key)
            if index_key is not None
            else _derive(self._secrets[ids[0]], b"ragprod index key v1")
        )

    # ----- construction -------------------------------------------------
    @classmethod
    def generate(cls) -> Keyring:
        """A new keyring with one random primary key and a random index key."""
        return cls({secrets.token_hex(4): os.urandom(KEY_BYTES)}, index_key=os.urandom(KEY_BYTES))

    @classmethod
    def from_base64(cls, key: str, *, key_id: str | None = None) -> Keyring:
        """A one-key keyring from a base64 32-byte key (e.g. ``openssl rand -base64 32``).

        The key id, when not given, is derived from the key (HKDF), so the same
        key always gets the same id; the index key is derived from it too.
        """
        secret = _b64decode(key.strip(), "the encryption key")
        if len(secret) != KEY_BYTES:
            raise ConfigurationError(f"the encryption key must decode to {KEY_BYTES} bytes")
        kid = key_id or _derive(secret, b"ragprod key id v1", 4).hex()
        return cls({kid: secret})

    @classmethod
    def from_json(cls, text: str | bytes, *, provider: KeyProvider | None = None) -> Keyring:
        """Load what :meth:`to_json` wrote; pass the same ``provider`` if keys are wrapped.

        Raises:
            ConfigurationError: not a keyring document, or wrapped keys without
                a provider.
            DecryptionError: a wrapped key failed to unwrap.
        """
        try:
            doc = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError("the keyring is not valid JSON") from exc
        if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
            raise ConfigurationError(f"the keyring JSON must have format={_FORMAT!r}")
        raw_keys = doc.get("keys")
        if not isinstance(raw_keys, dict) or not all(isinstance(v, str) for v in raw_keys.values()):
            raise ConfigurationError("the keyring JSON needs a 'keys' object of base64 strings")
        wrapped = bool(doc.get("wrapped", False))
        if wrapped and provider is None:
            raise ConfigurationError("the keyring's keys are wrapped: pass provider=")

        def unwrap(name: str, value: str) -> bytes:
            data = _b64decode(value, f"key {name!r}")
            if wrapped:
                assert provider is not None
                return provider.unwrap(data, context=f"ragprod keyring key {name}")
            return data

        keys = {kid: unwrap(kid, value) for kid, value in raw_keys.items()}
        index = doc.get("index_key")
        index_key = unwrap("<index>", index) if isinstance(index, str) else None
        primary = doc.get("primary")
        return cls(keys, primary=primary if isinstance(primary, str) else None, index_key=index_key)

    @classmethod
    def from_env(
        cls,
        name: str = DEFAULT_ENV_VAR,
        *,
        environ: Mapping[str, str] | None = None,
        provider: KeyProvider | None = None,
    ) -> Keyring:
        """Load from an environment variable holding keyring JSON or one base64 key.

        Raises:
            ConfigurationError: the variable is missing or invalid (the message
                names the variable, never its value).
        """
        env = os.environ if environ is None else environ
        value = env.get(name)
        if not value or not value.strip():
            raise ConfigurationError(f"environment variable {name} is not set")
        if value.lstrip().startswith("{"):
            return cls.from_json(value, provider=provider)
        return cls.from_base64(value)

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], *, provider: KeyProvider | None = None
    ) -> Keyring:
        """Load keyring JSON from ``path`` (written by :meth:`to_file`)."""
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError("the keyring file cannot be read") from exc
        return cls.from_json(text, provider=provider)

    # ----- export ---------------------------------------------------------
    def to_json(self, *, provider: KeyProvider | None = None) -> str:
        """Export every key, the primary id and the index key as JSON.

        This is the only method that reveals key material. With ``provider``
        the keys are wrapped (envelope encryption) and the JSON is safe to
        store next to the data; without it, treat the JSON as a secret.
        """

        def wrap(name: str, secret: bytes) -> str:
            if provider is None:
                return _b64(secret)
            return _b64(provider.wrap(secret, context=f"ragprod keyring key {name}"))

        with self._lock:
            doc = {
                "format": _FORMAT,
                "version": 1,
                "wrapped": provider is not None,
                "primary": self._primary,
                "keys": {kid: wrap(kid, s) for kid, s in self._secrets.items()},
                "index_key": wrap("<index>", self._index_key),
            }
        return json.dumps(doc, indent=2)

    def to_file(self, path: str | os.PathLike[str], *, provider: KeyProvider | None = None) -> None:
        """Write :meth:`to_json` to ``path`` atomically with mode 0600."""
        from ragprod.crypto._files import atomic_write

        atomic_write(os.fspath(path), self.to_json(provider=provider).encode("utf-8"))

    # ----- rotation -------------------------------------------------------
    def rotate(self, *, key_id: str | None = None, key: bytes | None = None) -> str:
        """Add a new key and make it the primary; return its id.

        Older keys stay for decryption until :meth:`retire` removes them.
        """
        kid = key_id or secrets.token_hex(4)
        secret = key if key is not None else os.urandom(KEY_BYTES)
        if not _KEY_ID.match(kid) or len(secret) != KEY_BYTES:
            raise ConfigurationError("a new key needs a valid id and 32 bytes")
        with self._lock:
            if kid in self._secrets:
                raise ConfigurationError(f"key id {kid!r} is already in the keyring")
            self._secrets[kid] = bytes(secret)
            self._aeads[kid] = AESGCM(secret)
            self._primary = kid
        return kid

    def set_primary(self, key_id: str) -> None:
        """Make an existing key the primary (e.g. to roll back a rotation)."""
        with self._lock:
            if key_id not in self._secrets:
                raise KeyNotFoundError(key_id)
            self._primary = key_id

    def retire(self, key_id: str) -> None:
        """Remove a key for good: crypto-shredding of every record it sealed.

        Raises:
            KeyNotFoundError: no such key.
            ConfigurationError: ``key_id`` is the primary (rotate first).
        """
        with self._lock:
            if key_id not in self._secrets:
                raise KeyNotFoundError(key_id)
            if key_id == self._primary:
                raise ConfigurationError("the primary key cannot be retired; rotate first")
            del self._secrets[key_id]
            del self._aeads[key_id]

    # ----- inspection -----------------------------------------------------
    @property
    def primary_id(self) -> str:
        """The id of the key that encrypts new records."""
        return self._primary

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Every key id, oldest first."""
        return tuple(self._secrets)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._secrets

    def __len__(self) -> int:
        return len(self._secrets)

    def __repr__(self) -> str:
        return f"Keyring(primary={self._primary!r}, key_ids={list(self._secrets)!r})"

    def __reduce__(self) -> Any:
        raise TypeError("keyrings are never pickled; use to_json() with a KeyProvider")

    def same_keys(self, other: Keyring) -> bool:
        """Whether both keyrings hold the same ids and key material (constant-time)."""
        if set(self._secrets) != set(other._secrets):
            return False
        equal = secrets.compare_digest(self._index_key, other._index_key)
        for kid, secret in self._secrets.items():
            equal &= secrets.compare_digest(secret, other._secrets[kid])
        return equal

    # ----- for the codec (private) ----------------------------------------
    def _primary_aead(self) -> tuple[str, AESGCM]:
        kid = self._primary
        return kid, self._aeads[kid]

    def _aead(self, key_id: str) -> AESGCM:
        try:
            return self._aeads[key_id]
        except KeyError:
            raise KeyNotFoundError(key_id) from None

    def _index_secret(self) -> bytes:
        return self._index_key
