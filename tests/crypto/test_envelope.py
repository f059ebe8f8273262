"""The record format: round trips, and every kind of tampering is detected."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from ragprod.crypto import Keyring
from ragprod.crypto._envelope import context, key_id_of, open_sealed, seal
from ragprod.errors import CryptoError, DecryptionError, KeyNotFoundError

RING = Keyring.generate()
OTHER = Keyring.generate()
fields = st.lists(st.text(max_size=40), max_size=4)


@given(plaintext=st.binary(max_size=4096), ctx=fields)
def test_seal_open_round_trip(plaintext: bytes, ctx: list[str]) -> None:
    """Whatever is sealed opens to the same bytes under the same context."""
    blob = seal(RING, plaintext, context(*ctx))
    assert open_sealed(RING, blob, context(*ctx)) == plaintext
    assert key_id_of(blob) == RING.primary_id


@given(plaintext=st.binary(max_size=256))
def test_overhead_is_header_nonce_and_tag(plaintext: bytes) -> None:
    """A record is 2 + len(key id) + 12 + 16 bytes longer than its plaintext."""
    blob = seal(RING, plaintext, context("s"))
    assert len(blob) == len(plaintext) + 2 + len(RING.primary_id) + 12 + 16


@settings(max_examples=30)
@given(plaintext=st.binary(min_size=0, max_size=64), data=st.data())
def test_every_single_byte_flip_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    """Flipping any bit of any byte of a record makes it fail to open."""
    blob = seal(RING, plaintext, context("store", "coll", "key"))
    for index in range(len(blob)):
        bit = data.draw(st.integers(0, 7), label=f"bit@{index}")
        tampered = bytearray(blob)
        tampered[index] ^= 1 << bit
        with pytest.raises(CryptoError):
            open_sealed(RING, bytes(tampered), context("store", "coll", "key"))


@given(plaintext=st.binary(max_size=64), cut=st.integers(min_value=1, max_value=200))
def test_truncation_and_extension_are_detected(plaintext: bytes, cut: int) -> None:
    """A shortened record, or one with bytes appended, fails to open."""
    blob = seal(RING, plaintext, context("c"))
    with pytest.raises(DecryptionError):
        open_sealed(RING, blob[: max(0, len(blob) - cut)], context("c"))
    with pytest.raises(DecryptionError):
        open_sealed(RING, blob + b"\x00" * cut, context("c"))


@given(a=fields, b=fields)
def test_other_context_is_rejected(a: list[str], b: list[str]) -> None:
    """A record opened under any other context fails authentication."""
    if a == b:
        return
    blob = seal(RING, b"payload", context(*a))
    with pytest.raises(DecryptionError) as info:
        open_sealed(RING, blob, context(*b))
    assert info.value.reason == "authentication_failed"
    assert info.value.key_id == RING.primary_id


def test_context_fields_are_unambiguous() -> None:
    """("ab", "c") and ("a", "bc") are different contexts."""
    assert context("ab", "c") != context("a", "bc")
    assert context("a", "") != context("a")


def test_unknown_key_id_raises_key_not_found() -> None:
    """A record sealed by another keyring names a key this one does not have."""
    blob = seal(OTHER, b"x", context())
    with pytest.raises(KeyNotFoundError) as info:
        open_sealed(RING, blob, context())
    assert info.value.key_id == OTHER.primary_id


def test_same_key_id_other_key_fails_authentication() -> None:
    """A keyring with the same id but different key material cannot open the record."""
    twin = Keyring({RING.primary_id: b"\x01" * 32})
    blob = seal(RING, b"secret", context())
    with pytest.raises(DecryptionError) as info:
        open_sealed(twin, blob, context())
    assert isinstance(info.value.__cause__, InvalidTag)
    assert "secret" not in str(info.value)


@pytest.mark.parametrize(
    ("blob", "reason"),
    [
        (b"", "malformed"),
        (b"\x01", "malformed"),
        (b"\x02\x08abcdefgh" + b"\x00" * 40, "unsupported_version"),
        (b"\x01\x00" + b"\x00" * 40, "malformed"),
        (b"\x01\x08\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8" + b"\x00" * 40, "malformed"),
        (b"\x01\x08abcdefgh" + b"\x00" * 10, "malformed"),
    ],
)
def test_malformed_records_raise_typed_errors(blob: bytes, reason: str) -> None:
    """Garbage, a future version, an empty or non-ASCII key id are typed DecryptionErrors."""
    with pytest.raises(DecryptionError) as info:
        open_sealed(RING, blob, context())
    assert info.value.reason == reason


def test_ciphertext_is_plain_aes_gcm() -> None:
    """The record is standard AES-256-GCM: raw AESGCM opens it with the documented layout."""
    ring = Keyring({"k1": b"\x07" * 32})
    ctx = context("s", "c", "k")
    blob = seal(ring, b"interop", ctx)
    header, nonce, body = blob[:4], blob[4:16], blob[16:]
    assert header == b"\x01\x02k1"
    assert AESGCM(b"\x07" * 32).decrypt(nonce, body, header + ctx) == b"interop"


def test_nonces_are_unique() -> None:
    """Sealing the same plaintext twice gives different records."""
    blobs = {seal(RING, b"same", context()) for _ in range(1000)}
    assert len(blobs) == 1000
