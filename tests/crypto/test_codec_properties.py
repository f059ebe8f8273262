"""Property tests: any JSON value under any key round-trips through every encoding."""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from llama_index.core.storage.kvstore import SimpleKVStore

from ragprod.crypto import EncryptedKVStore, EncryptedSimpleKVStore, Keyring

RING = Keyring.generate()
surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
any_text = st.text(st.characters() | surrogates, max_size=20)  # lone surrogates too

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
values = st.dictionaries(st.text(max_size=10), json_values, max_size=5)


@settings(max_examples=100)
@example(key="\ud800", collection="c", value={"t": "\udfff"}, encoding="raw", encrypt_keys=True)
@given(
    key=any_text,
    collection=st.text(min_size=1, max_size=20),
    value=values,
    encoding=st.sampled_from(["base64", "raw"]),
    encrypt_keys=st.booleans(),
)
def test_any_value_round_trips(
    key: str, collection: str, value: dict[str, Any], encoding: str, encrypt_keys: bool
) -> None:
    """put then get/get_all returns the same value under the same key, whatever the text."""
    store = EncryptedKVStore(
        SimpleKVStore(),
        RING,
        encoding=encoding,
        encrypt_keys=encrypt_keys,  # type: ignore[arg-type]
    )
    store.put(key, value, collection=collection)
    assert store.get(key, collection=collection) == value
    assert store.get_all(collection=collection) == {key: value}


@settings(max_examples=30)
@given(
    data=st.dictionaries(
        st.text(max_size=6), st.dictionaries(st.text(max_size=6), values, max_size=3), max_size=3
    )
)
def test_sealed_dict_round_trips(data: dict[str, dict[str, dict[str, Any]]]) -> None:
    """EncryptedSimpleKVStore.to_dict/from_dict restores every collection exactly."""
    store = EncryptedSimpleKVStore(RING, data, label="prop")
    back = EncryptedSimpleKVStore.from_dict(store.to_dict(), keyring=RING, label="prop")
    assert back._collections_mappings == data
