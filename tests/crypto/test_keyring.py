"""Keyrings: loading, exporting, rotation, retirement, and never showing key material."""

from __future__ import annotations

import base64
import json
import os
import pickle
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragprod.crypto import EncryptedKVStore, KeyProvider, Keyring, LocalKeyProvider
from ragprod.errors import ConfigurationError, DecryptionError, KeyNotFoundError


def secrets_of(ring: Keyring) -> list[bytes]:
    """Every key's material, to check it appears nowhere."""
    doc = json.loads(ring.to_json())
    return [base64.b64decode(v) for v in [*doc["keys"].values(), doc["index_key"]]]


def test_generate_makes_one_primary_key() -> None:
    """A generated keyring has one 8-hex-character key id, which is the primary."""
    ring = Keyring.generate()
    assert len(ring) == 1
    assert ring.key_ids == (ring.primary_id,)
    assert len(ring.primary_id) == 8
    int(ring.primary_id, 16)


def test_repr_and_str_hide_key_material() -> None:
    """repr shows ids only: no base64 or hex of any key."""
    ring = Keyring.generate()
    ring.rotate()
    text = repr(ring) + str(ring)
    for secret in secrets_of(ring):
        assert base64.b64encode(secret).decode() not in text
        assert secret.hex() not in text
    assert ring.primary_id in text


def test_keyrings_refuse_pickling() -> None:
    """Pickling a keyring (or a provider) raises instead of writing keys out."""
    with pytest.raises(TypeError):
        pickle.dumps(Keyring.generate())
    with pytest.raises(TypeError):
        pickle.dumps(LocalKeyProvider(os.urandom(32)))


@given(n=st.integers(1, 4), primary=st.integers(0, 3))
def test_json_round_trip(n: int, primary: int) -> None:
    """to_json then from_json restores ids, order, primary and key material."""
    keys = {f"key-{i}": os.urandom(32) for i in range(n)}
    ring = Keyring(keys, primary=f"key-{min(primary, n - 1)}")
    back = Keyring.from_json(ring.to_json())
    assert back.key_ids == ring.key_ids
    assert back.primary_id == ring.primary_id
    assert back.same_keys(ring)


def test_wrapped_json_holds_no_key_material() -> None:
    """With a KeyProvider the exported JSON holds only wrapped keys; it loads back."""
    provider = LocalKeyProvider(os.urandom(32))
    assert isinstance(provider, KeyProvider)
    ring = Keyring.generate()
    text = ring.to_json(provider=provider)
    for secret in secrets_of(ring):
        assert base64.b64encode(secret).decode() not in text
    assert Keyring.from_json(text, provider=provider).same_keys(ring)
    with pytest.raises(ConfigurationError):
        Keyring.from_json(text)
    with pytest.raises(DecryptionError):
        Keyring.from_json(text, provider=LocalKeyProvider(os.urandom(32)))


def test_from_env_reads_json_or_one_base64_key() -> None:
    """The variable may hold keyring JSON or a single base64 key with a derived id."""
    ring = Keyring.generate()
    env = {"RAGPROD_ENCRYPTION_KEYS": ring.to_json()}
    assert Keyring.from_env(environ=env).same_keys(ring)
    key = base64.b64encode(b"\x05" * 32).decode()
    one = Keyring.from_env("MY_KEY", environ={"MY_KEY": key})
    again = Keyring.from_base64(key)
    assert one.primary_id == again.primary_id
    assert one.same_keys(again)


@pytest.mark.parametrize("value", ["", "   ", "not base64 !!", base64.b64encode(b"short").decode()])
def test_from_env_rejects_bad_values_without_echoing_them(value: str) -> None:
    """A missing or invalid variable is a ConfigurationError that names it, not its value."""
    with pytest.raises(ConfigurationError) as info:
        Keyring.from_env("SECRET_VAR", environ={"SECRET_VAR": value})
    assert "SECRET_VAR" in str(info.value) or "key" in str(info.value)
    if value.strip():
        assert value not in str(info.value)


def test_from_json_rejects_other_documents() -> None:
    """Invalid JSON or a document of another format raises ConfigurationError."""
    for text in ["{", "[]", json.dumps({"format": "x"}), json.dumps({"format": "ragprod-keyring"})]:
        with pytest.raises(ConfigurationError):
            Keyring.from_json(text)


def test_constructor_validates_everything_at_once() -> None:
    """Bad ids, short keys and an unknown primary are all reported in one error."""
    with pytest.raises(ConfigurationError) as info:
        Keyring({"bad id!": b"x" * 31}, primary="nope")
    assert len(info.value.problems) == 3
    with pytest.raises(ConfigurationError):
        Keyring({})


def test_to_file_writes_owner_only(tmp_path: Path) -> None:
    """The keyring file has mode 0600 and loads back."""
    ring = Keyring.generate()
    path = tmp_path / "keys.json"
    ring.to_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.from_file(path).same_keys(ring)
    with pytest.raises(ConfigurationError):
        Keyring.from_file(tmp_path / "missing.json")


def test_rotate_adds_primary_and_keeps_old_keys_for_reading() -> None:
    """After rotate, new records use the new key and old records still decrypt."""
    from llama_index.core.storage.kvstore import SimpleKVStore

    ring = Keyring.generate()
    store = EncryptedKVStore(SimpleKVStore(), ring)
    store.put("old", {"v": 1})
    old = ring.primary_id
    new = ring.rotate()
    store.put("new", {"v": 2})
    assert ring.primary_id == new != old
    assert store.get_all() == {"old": {"v": 1}, "new": {"v": 2}}
    ring.set_primary(old)
    assert ring.primary_id == old
    with pytest.raises(KeyNotFoundError):
        ring.set_primary("missing")


def test_rotate_rejects_duplicate_ids() -> None:
    """A rotation to an id already present is refused."""
    ring = Keyring.generate()
    with pytest.raises(ConfigurationError):
        ring.rotate(key_id=ring.primary_id)


def test_retire_removes_key_but_never_the_primary() -> None:
    """retire drops an old key; the primary and unknown ids are refused."""
    ring = Keyring.generate()
    old = ring.primary_id
    ring.rotate()
    with pytest.raises(ConfigurationError):
        ring.retire(ring.primary_id)
    ring.retire(old)
    assert old not in ring
    with pytest.raises(KeyNotFoundError):
        ring.retire(old)


def test_index_key_survives_rotation_and_export() -> None:
    """Pseudonymized storage keys stay the same after rotation and a JSON round trip."""
    from llama_index.core.storage.kvstore import SimpleKVStore

    ring = Keyring.from_base64(base64.b64encode(b"\x09" * 32).decode())
    before = EncryptedKVStore(SimpleKVStore(), ring).storage_key("doc")
    ring.rotate()
    after = EncryptedKVStore(SimpleKVStore(), Keyring.from_json(ring.to_json()))
    assert after.storage_key("doc") == before
