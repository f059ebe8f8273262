"""The stored value format: pickle-free round trips, and corrupt bytes read as misses."""

from __future__ import annotations

import json
import pickle
import struct
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core.base.response.schema import Response
from llama_index.core.schema import NodeRelationship, NodeWithScore, RelatedNodeInfo, TextNode

from ragprod.cache._serde import (
    FORMAT_VERSION,
    MISS,
    StreamedResponse,
    UnencodableValueError,
    decode,
    encode,
    encode_vector,
    to_float32,
)

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text()
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
metadata = st.dictionaries(st.text(max_size=10), json_scalars, max_size=4)


@st.composite
def nodes(draw: st.DrawFn) -> NodeWithScore:
    relationships = {}
    if draw(st.booleans()):
        relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=draw(st.text(max_size=8)))
    node = TextNode(
        id_=draw(st.text(min_size=1, max_size=12)),
        text=draw(st.text(max_size=200)),
        metadata=draw(metadata),
        relationships=relationships,
        excluded_llm_metadata_keys=draw(st.lists(st.text(max_size=5), max_size=2)),
    )
    score = draw(st.none() | st.floats(allow_nan=False, allow_infinity=False))
    return NodeWithScore(node=node, score=score)


def same_node(a: NodeWithScore, b: NodeWithScore) -> bool:
    return (
        a.node.node_id == b.node.node_id
        and a.node.get_content() == b.node.get_content()
        and a.node.metadata == b.node.metadata
        and a.score == b.score
        and a.node.ref_doc_id == b.node.ref_doc_id
        and a.node.excluded_llm_metadata_keys == b.node.excluded_llm_metadata_keys
    )


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_json_values_round_trip(value: Any) -> None:
    """Any JSON value (None included) decodes to an equal value."""
    assert decode(encode(value)) == value


@settings(max_examples=80, deadline=None)
@given(
    st.none() | st.text(max_size=300),
    st.lists(nodes(), max_size=4),
    st.none() | metadata,
    st.booleans(),
)
def test_responses_round_trip(
    text: str | None, sources: list[NodeWithScore], meta: dict[str, Any] | None, streamed: bool
) -> None:
    """A Response keeps its text, metadata and source nodes (id, text, metadata, score, doc)."""
    kind = StreamedResponse if streamed else Response
    back = decode(encode(kind(text, sources, meta)))
    assert type(back) is kind
    assert back.response == text
    assert back.metadata == meta
    assert len(back.source_nodes) == len(sources)
    assert all(same_node(a, b) for a, b in zip(back.source_nodes, sources, strict=True))


@settings(max_examples=50, deadline=None)
@given(st.lists(nodes(), min_size=1, max_size=5))
def test_retrievals_round_trip(sources: list[NodeWithScore]) -> None:
    """A list of NodeWithScore decodes to equal nodes in the same order."""
    back = decode(encode(sources))
    assert all(same_node(a, b) for a, b in zip(back, sources, strict=True))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(width=32, allow_nan=False), max_size=2048))
def test_vectors_round_trip_as_float32(vector: list[float]) -> None:
    """A vector decodes to its float32 values, 4 bytes per dimension plus a 10-byte header."""
    data = encode_vector(vector)
    assert len(data) == 10 + 4 * len(vector)
    assert decode(data) == to_float32(vector) == vector


def test_large_json_is_compressed_and_round_trips() -> None:
    """Payloads above the threshold are zlib-compressed and still decode."""
    value = {"text": "refund policy " * 2000}
    data = encode(value, compress_threshold=1024)
    assert data[5] & 1
    assert len(data) < 2000
    assert decode(data) == value


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    """Decoding random bytes returns MISS or a value, never raises."""
    decode(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_corrupted_values_never_raise(data: st.DataObject) -> None:
    """Flipping, truncating or extending a valid value never raises."""
    value = encode(Response("answer", [], {"k": 1}))
    cut = data.draw(st.integers(0, len(value)))
    flip = data.draw(st.integers(0, len(value) - 1))
    mutated = bytearray(value[:cut] + data.draw(st.binary(max_size=8)))
    if flip < len(mutated):
        mutated[flip] ^= 0xFF
    decode(bytes(mutated))


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"RPc",
        pickle.dumps({"a": 1}),
        pickle.dumps(Response("x")),
        json.dumps({"a": 1}).encode(),
        b"RPc" + bytes((FORMAT_VERSION + 1, ord("j"), 0)) + b"1",  # another version
        b"RPc" + bytes((FORMAT_VERSION, ord("?"), 0)) + b"1",  # unknown kind
        b"RPc" + bytes((FORMAT_VERSION, ord("j"), 0x80)) + b"1",  # unknown flag
        b"RPc" + bytes((FORMAT_VERSION, ord("r"), 0)) + b'{"t": 5, "n": [], "m": null}',
        b"RPc" + bytes((FORMAT_VERSION, ord("n"), 0)) + b'[{"i": 1}]',
        b"RPc" + bytes((FORMAT_VERSION, ord("v"), 0)) + struct.pack("<I", 3) + b"\0" * 8,
        b"RPc" + bytes((FORMAT_VERSION, ord("j"), 1)) + b"not zlib",
    ],
    ids=lambda d: repr(d)[:30],
)
def test_foreign_and_corrupt_values_are_misses(data: bytes | None) -> None:
    """Pickles, plain JSON, other versions, bad shapes and bad compression all read as MISS."""
    assert decode(data) is MISS


def test_decompression_bomb_is_a_miss() -> None:
    """A payload that inflates beyond max_bytes is a miss, not an allocation."""
    bomb = b"RPc" + bytes((FORMAT_VERSION, ord("j"), 1)) + zlib.compress(b'"' + b"a" * 10**6 + b'"')
    assert decode(bomb, max_bytes=64 * 1024) is MISS
    assert decode(bomb, max_bytes=2 * 10**6) == "a" * 10**6


def test_values_that_need_pickle_are_refused() -> None:
    """A value JSON cannot hold raises UnencodableValueError instead of falling back to pickle."""
    with pytest.raises(UnencodableValueError):
        encode({"when": object()})
    with pytest.raises(UnencodableValueError):
        encode(Response("x", [], {"bad": {1, 2}}))


def test_miss_is_falsy_and_distinct_from_none() -> None:
    """MISS is a singleton marker, and None is an ordinary value."""
    assert MISS is not None
    assert not MISS
    assert repr(MISS) == "MISS"
    assert decode(encode(None)) is None
