"""The byte format of cached values: versioned, pickle-free, corruption-safe.

Every value written to Redis starts with a 6-byte header::

    b"RPc" | version (1 byte) | kind (1 byte) | flags (1 byte) | payload

``kind`` says how to read the payload:

- ``j``: any JSON value (``None``, numbers, strings, lists, dicts) as UTF-8 JSON;
- ``r``: a LlamaIndex ``Response``: answer text, source nodes (id, text,
  metadata, score, source document id, metadata exclusions) and response
  metadata, as UTF-8 JSON;
- ``n``: a list of ``NodeWithScore`` (a retrieval), same node layout;
- ``v``: a float vector: a little-endian ``uint32`` dimension, then that many
  little-endian ``float32`` values (6 KB for 1536 dimensions, decoded in well
  under a microsecond per hundred values).

Flag bit 0 marks a zlib-compressed payload (used above a size threshold, for
the JSON kinds only). :func:`decode` never raises: a value it cannot read
(foreign bytes, another version, truncated, a decompression bomb, wrong shape)
is reported as :data:`MISS`, so a corrupt entry costs one recomputation, never
an exception. Nothing is ever unpickled: the worst a writer to a shared Redis
can do is make a reader see wrong text, not run code.
"""

from __future__ import annotations

import array
import json
import struct
import sys
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from llama_index.core.base.response.schema import Response
from llama_index.core.schema import (
    NodeRelationship,
    NodeWithScore,
    RelatedNodeInfo,
    TextNode,
)

__all__ = [
    "FORMAT_VERSION",
    "MISS",
    "StreamedResponse",
    "UnencodableValueError",
    "decode",
    "encode",
    "encode_vector",
    "to_float32",
]

FORMAT_VERSION: Final = 1
_MAGIC: Final = b"RPc"
_HEADER: Final = len(_MAGIC) + 3
_ZLIB: Final = 0x01
_DIM = struct.Struct("<I")
_LITTLE = sys.byteorder == "little"


class _Miss:
    """The "no value" marker: distinct from ``None``, which is a cacheable value."""

    _instance: _Miss | None = None

    def __new__(cls) -> _Miss:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISS"

    def __bool__(self) -> bool:
        return False


#: Returned by every lookup that found nothing usable (``None`` is a value).
MISS: Final = _Miss()


@dataclass
class StreamedResponse(Response):
    """A cached ``Response`` that was produced by a stream; hits replay it as a stream."""


class UnencodableValueError(TypeError):
    """The value cannot be stored in the cache format (e.g. a non-JSON metadata value)."""


# -- nodes and responses -----------------------------------------------------


def _node_to_json(item: NodeWithScore) -> dict[str, Any]:
    node = item.node
    text = node.text if isinstance(node, TextNode) else node.get_content()
    source = node.relationships.get(NodeRelationship.SOURCE)
    record: dict[str, Any] = {"i": node.node_id, "x": text, "m": node.metadata, "s": item.score}
    if isinstance(source, RelatedNodeInfo):
        record["r"] = source.node_id
    if node.excluded_llm_metadata_keys:
        record["el"] = list(node.excluded_llm_metadata_keys)
    if node.excluded_embed_metadata_keys:
        record["ee"] = list(node.excluded_embed_metadata_keys)
    return record


def _node_from_json(record: Any) -> NodeWithScore:
    if not isinstance(record, dict):
        raise ValueError("node record is not an object")
    node_id, text, metadata, score = record["i"], record["x"], record["m"], record["s"]
    if not isinstance(node_id, str) or not isinstance(text, str) or not isinstance(metadata, dict):
        raise ValueError("bad node record")
    if score is not None and not isinstance(score, (int, float)):
        raise ValueError("bad score")
    relationships = {}
    if "r" in record:
        relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=str(record["r"]))
    node = TextNode(
        id_=node_id,
        text=text,
        metadata=metadata,
        relationships=relationships,
        excluded_llm_metadata_keys=[str(k) for k in record.get("el", ())],
        excluded_embed_metadata_keys=[str(k) for k in record.get("ee", ())],
    )
    return NodeWithScore(node=node, score=score)


def _response_to_json(response: Response) -> dict[str, Any]:
    record: dict[str, Any] = {
        "t": response.response,
        "n": [_node_to_json(n) for n in response.source_nodes],
        "m": response.metadata,
    }
    if isinstance(response, StreamedResponse):
        record["st"] = 1
    return record


def _response_from_json(record: Any) -> Response:
    if not isinstance(record, dict):
        raise ValueError("response record is not an object")
    text, nodes, metadata = record["t"], record["n"], record["m"]
    if text is not None and not isinstance(text, str):
        raise ValueError("bad response text")
    if not isinstance(nodes, list) or (metadata is not None and not isinstance(metadata, dict)):
        raise ValueError("bad response record")
    kind = StreamedResponse if record.get("st") else Response
    return kind(response=text, source_nodes=[_node_from_json(n) for n in nodes], metadata=metadata)


# -- vectors -----------------------------------------------------------------


def _pack_floats(values: Sequence[float]) -> bytes:
    packed = array.array("f", values)
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        packed.byteswap()
    return _DIM.pack(len(packed)) + packed.tobytes()


def _unpack_floats(payload: bytes | memoryview) -> list[float]:
    (dim,) = _DIM.unpack_from(payload)
    if len(payload) != _DIM.size + 4 * dim:
        raise ValueError("vector length does not match its header")
    values = array.array("f")
    values.frombytes(payload[_DIM.size :])
    if not _LITTLE:  # pragma: no cover - big-endian hosts
        values.byteswap()
    return values.tolist()


def to_float32(values: Sequence[float]) -> list[float]:
    """``values`` rounded to float32, exactly as a cached vector reads back."""
    return array.array("f", values).tolist()


def encode_vector(values: Sequence[float]) -> bytes:
    """Encode a float vector as packed float32 with a dimension header.

    Example:
        >>> decode(encode_vector([0.5, -1.0]))
        [0.5, -1.0]
    """
    return _MAGIC + bytes((FORMAT_VERSION, ord("v"), 0)) + _pack_floats(values)


# -- the envelope ------------------------------------------------------------


def encode(value: Any, *, compress_threshold: int = 4096) -> bytes:
    """Encode a cacheable value: a ``Response``, a list of ``NodeWithScore`` or JSON data.

    Args:
        value: the value; ``None`` is a value like any other.
        compress_threshold: JSON payloads at least this long are zlib-compressed.

    Raises:
        UnencodableValueError: the value (or a metadata value inside it) is not
            representable without pickle; callers skip caching it.

    Example:
        >>> decode(encode({"a": [1, None]}))
        {'a': [1, None]}
    """
    data: Any
    if isinstance(value, Response):
        kind, data = "r", _response_to_json(value)
    elif isinstance(value, list) and value and all(isinstance(v, NodeWithScore) for v in value):
        kind, data = "n", [_node_to_json(v) for v in value]
    else:
        kind, data = "j", value
    try:
        payload = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "surrogatepass"
        )
    except (TypeError, ValueError) as exc:
        raise UnencodableValueError(f"cannot encode a {type(value).__name__} value") from exc
    flags = 0
    if len(payload) >= compress_threshold:
        payload = zlib.compress(payload, 1)
        flags |= _ZLIB
    return _MAGIC + bytes((FORMAT_VERSION, ord(kind), flags)) + payload


def decode(data: bytes | bytearray | memoryview | None, *, max_bytes: int = 8 << 20) -> Any:
    """Decode bytes written by :func:`encode`/:func:`encode_vector`, or return ``MISS``.

    Never raises: unknown magic, another format version, a truncated or
    corrupt payload, a payload that inflates past ``max_bytes`` or has the
    wrong shape all read as ``MISS``.

    Example:
        >>> decode(b"not ours") is MISS
        True
    """
    if data is None or len(data) < _HEADER or len(data) > max_bytes:
        return MISS
    data = bytes(data)
    if data[:3] != _MAGIC or data[3] != FORMAT_VERSION:
        return MISS
    kind, flags = data[4], data[5]
    try:
        if kind == ord("v"):
            return MISS if flags else _unpack_floats(memoryview(data)[_HEADER:])
        if flags & ~_ZLIB:
            return MISS
        payload = data[_HEADER:]
        if flags & _ZLIB:
            inflater = zlib.decompressobj()
            payload = inflater.decompress(payload, max_bytes)
            if inflater.unconsumed_tail or not inflater.eof:
                return MISS
        loaded = json.loads(payload.decode("utf-8", "surrogatepass"))
        if kind == ord("j"):
            return loaded
        if kind == ord("r"):
            return _response_from_json(loaded)
        if kind == ord("n"):
            if not isinstance(loaded, list):
                return MISS
            return [_node_from_json(n) for n in loaded]
    except (ValueError, KeyError, TypeError, zlib.error, struct.error, RecursionError):
        return MISS
    return MISS
