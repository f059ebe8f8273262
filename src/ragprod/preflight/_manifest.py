"""The index manifest: what built an index, checked again at serve time.

An index only answers well when it is queried with the embedding model that
built it. A different model of the same dimension raises nothing and returns
garbage, so names and dimensions are not enough: the manifest also stores the
vector of a fixed *canary* text. At serve time the current model embeds the
same text; a cosine below :data:`CANARY_MIN_COSINE` means a different model.
A deterministic model gives the same vector after every restart, so the
check raises no false alarm.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragprod.preflight._check import check, finding
from ragprod.preflight._context import CheckContext
from ragprod.preflight._finding import Finding

__all__ = [
    "CANARY_MIN_COSINE",
    "CANARY_TEXT",
    "MANIFEST_CHECKS",
    "Manifest",
    "build_manifest",
    "load_manifest",
    "write_manifest",
]

CANARY_TEXT = (
    "ragprod manifest canary: the quick brown fox checks refund policies, Redis failover "
    "and encryption keys before the first query."
)
CANARY_MIN_COSINE = 0.999
MANIFEST_KEY = "ragprod_manifest"
MANIFEST_COLLECTION = "ragprod_manifest"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class Manifest:
    """What an index was built with (see :func:`write_manifest`).

    All fields are JSON-able; ``canary_vector`` is the embedding of
    :data:`CANARY_TEXT` rounded to 7 significant digits.
    """

    embed_model_class: str
    embed_model_name: str
    dimension: int
    canary_vector: tuple[float, ...]
    canary_text: str = CANARY_TEXT
    tokenizer: str = ""
    chunking: Mapping[str, Any] = field(default_factory=dict)
    llama_index_core: str = ""
    key_ids: tuple[str, ...] = ()
    index_id: str | None = None
    created_at: str = ""
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what :func:`write_manifest` stores)."""
        data = asdict(self)
        data["canary_vector"] = list(self.canary_vector)
        data["key_ids"] = list(self.key_ids)
        data["chunking"] = dict(self.chunking)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Manifest:
        """Parse :meth:`to_dict` output.

        Raises:
            ValueError: a required field is missing or has the wrong type.
        """
        try:
            vector = tuple(float(v) for v in data["canary_vector"])
            return cls(
                embed_model_class=str(data["embed_model_class"]),
                embed_model_name=str(data["embed_model_name"]),
                dimension=int(data["dimension"]),
                canary_vector=vector,
                canary_text=str(data.get("canary_text", CANARY_TEXT)),
                tokenizer=str(data.get("tokenizer", "")),
                chunking=dict(data.get("chunking") or {}),
                llama_index_core=str(data.get("llama_index_core", "")),
                key_ids=tuple(str(k) for k in data.get("key_ids") or ()),
                index_id=data.get("index_id"),
                created_at=str(data.get("created_at", "")),
                format_version=int(data.get("format_version", FORMAT_VERSION)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a ragprod manifest: {type(exc).__name__}") from exc

    @property
    def fingerprint(self) -> str:
        """A short hash of the canary vector (for logs and comparisons by eye)."""
        raw = json.dumps(list(self.canary_vector)).encode()
        return hashlib.sha256(raw).hexdigest()[:16]


def model_class(model: Any) -> str:
    """LlamaIndex's serialisation name of a model (``class_name()``), else its type name."""
    try:
        return str(model.class_name())
    except Exception:
        return type(model).__name__


def _round(x: float) -> float:
    return float(f"{x:.7g}")


def tokenizer_id(tokenizer: Any) -> str:
    """A readable id for a tokenizer callable (``tiktoken:cl100k_base`` ...)."""
    if tokenizer is None:
        return ""
    func = tokenizer.func if isinstance(tokenizer, functools.partial) else tokenizer
    owner = getattr(func, "__self__", None)
    if owner is not None:
        name = getattr(owner, "name", None) or getattr(owner, "name_or_path", None)
        return f"{type(owner).__module__.split('.')[0]}:{name or type(owner).__name__}"
    return getattr(func, "__qualname__", type(func).__name__)


def _chunking(parser: Any) -> dict[str, Any]:
    if parser is None:
        return {}
    return {
        "parser": type(parser).__name__,
        "chunk_size": getattr(parser, "chunk_size", None),
        "chunk_overlap": getattr(parser, "chunk_overlap", None),
    }


def build_manifest(
    index: Any = None, *, embed_model: Any = None, keyring: Any = None, node_parser: Any = None
) -> Manifest:
    """Describe ``index`` (or just ``embed_model``) as a :class:`Manifest`.

    Embeds :data:`CANARY_TEXT` once with the index's embedding model.
    """
    from llama_index.core import Settings, __version__

    ctx = CheckContext(index=index)
    model = embed_model or ctx.embed_model
    if model is None:
        raise ValueError("build_manifest needs an index with an embedding model, or embed_model=")
    vector = [_round(v) for v in model.get_text_embedding(CANARY_TEXT)]
    parser = node_parser
    if parser is None:
        parsers = ctx.node_parsers
        parser = parsers[0][1] if parsers else Settings._node_parser
    tokenizer = getattr(parser, "_tokenizer", None) if parser is not None else None
    return Manifest(
        embed_model_class=model_class(model),
        embed_model_name=str(getattr(model, "model_name", "") or ""),
        dimension=len(vector),
        canary_vector=tuple(vector),
        tokenizer=tokenizer_id(tokenizer),
        chunking=_chunking(parser),
        llama_index_core=__version__,
        key_ids=tuple(getattr(keyring, "key_ids", ()) or ()),
        index_id=getattr(index, "index_id", None),
        created_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )


def write_manifest(
    index: Any,
    path_or_store: str | os.PathLike[str] | Any,
    *,
    embed_model: Any = None,
    keyring: Any = None,
    node_parser: Any = None,
    collection: str = MANIFEST_COLLECTION,
) -> Manifest:
    """Record what ``index`` was built with, next to it; returns the manifest.

    Call it at build time, right after ingestion. At serve time pass the same
    location to ``validate(index=..., manifest=...)``.

    Args:
        index: the freshly built index (its embedding model is used).
        path_or_store: a file path (JSON is written there) or a LlamaIndex
            ``BaseKVStore`` (stored under key ``ragprod_manifest`` in collection
            ``ragprod_manifest``), e.g. ``storage_context.index_store._kvstore``.
        embed_model: override the model (when the index does not hold one).
        keyring: its key ids are recorded (duck-typed: ``key_ids``).
        node_parser: the parser used for ingestion (default: the index's or
            ``Settings``').
        collection: the KV-store collection (Redis hash) to write to.

    Example:
        >>> from llama_index.core import Document, VectorStoreIndex
        >>> from ragprod.testing import HashEmbedding
        >>> from ragprod.preflight import write_manifest
        >>> from llama_index.core.storage.kvstore import SimpleKVStore
        >>> index = VectorStoreIndex.from_documents([Document(text="hi")],
        ...                                         embed_model=HashEmbedding(dim=64))
        >>> write_manifest(index, SimpleKVStore()).dimension
        64
    """
    manifest = build_manifest(
        index, embed_model=embed_model, keyring=keyring, node_parser=node_parser
    )
    data = manifest.to_dict()
    if isinstance(path_or_store, (str, os.PathLike)):
        path = Path(path_or_store)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        tmp.replace(path)
    else:
        path_or_store.put(MANIFEST_KEY, data, collection=collection)
    return manifest


def load_manifest(
    source: Manifest | Mapping[str, Any] | str | os.PathLike[str] | Any,
    *,
    collection: str = MANIFEST_COLLECTION,
) -> Manifest:
    """Read a manifest from a :class:`Manifest`, a dict, a JSON file or a KV store.

    ``collection`` is the KV-store collection :func:`write_manifest` wrote to.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the content is not a manifest (or the store holds none).
    """
    if isinstance(source, Manifest):
        return source
    if isinstance(source, Mapping):
        return Manifest.from_dict(source)
    if isinstance(source, (str, os.PathLike)):
        text = Path(source).read_text(encoding="utf-8")
        try:
            return Manifest.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise ValueError("not a ragprod manifest: invalid JSON") from exc
    data = source.get(MANIFEST_KEY, collection=collection)
    if data is None:
        raise ValueError("the store holds no ragprod manifest")
    return Manifest.from_dict(data)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity (0.0 when either vector is all zeros)."""
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    return dot / (na * nb) if na and nb else 0.0


def _embed_with_timeout(model: Any, text: str, timeout: float) -> list[float]:
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        return list(pool.submit(model.get_text_embedding, text).result(timeout=timeout))
    finally:
        pool.shutdown(wait=False)


@check(
    "manifest",
    "RAGPROD-E021",
    "RAGPROD-E022",
    "RAGPROD-E023",
    "RAGPROD-W024",
    "RAGPROD-W025",
    "RAGPROD-E026",
    "RAGPROD-E027",
    "RAGPROD-W028",
    "RAGPROD-W029",
)
def check_manifest(ctx: CheckContext) -> Iterator[Finding]:
    """The serving embedding model, chunking and keys match the index manifest."""
    if ctx.manifest is None:
        return
    try:
        manifest = load_manifest(ctx.manifest)
    except (OSError, ValueError) as exc:
        yield finding(
            "RAGPROD-E027",
            f"the index manifest cannot be read ({type(exc).__name__})",
            value=type(exc).__name__,
            expected="a manifest written by write_manifest()",
            fix="run write_manifest(index, ...) at build time, or fix the path",
        )
        return
    yield from _compare_model(ctx, manifest)
    yield from _compare_build(ctx, manifest)


def _compare_model(ctx: CheckContext, manifest: Manifest) -> Iterator[Finding]:
    from ragprod.preflight._checks_storage import model_dimension

    model = ctx.embed_model
    if model is None:
        return
    name = str(getattr(model, "model_name", "") or "")
    if (model_class(model), name) != (manifest.embed_model_class, manifest.embed_model_name):
        yield finding(
            "RAGPROD-E021",
            "the embedding model differs from the one that built the index",
            value={"class": model_class(model), "model_name": name},
            expected={"class": manifest.embed_model_class, "model_name": manifest.embed_model_name},
            fix="serve with the build-time embedding model, or rebuild the index",
        )
    dim = model_dimension(model)
    if dim is not None and dim != manifest.dimension:
        yield finding(
            "RAGPROD-E023",
            f"the embedding model makes {dim}-dimension vectors; the index holds "
            f"{manifest.dimension}",
            value=dim,
            expected=manifest.dimension,
            fix="serve with the build-time embedding model, or rebuild the index",
        )
        return
    try:
        vector = _embed_with_timeout(model, manifest.canary_text, max(ctx.timeout, 0.001))
    except FutureTimeout:
        yield finding(
            "RAGPROD-W028",
            f"the canary embedding did not finish within {ctx.timeout:g}s; model identity "
            "not verified",
            value="timeout",
            expected="a canary vector",
            fix="raise validate(timeout=...) or check the embedding service",
        )
        return
    if len(vector) != manifest.dimension:
        yield finding(
            "RAGPROD-E023",
            f"the embedding model makes {len(vector)}-dimension vectors; the index holds "
            f"{manifest.dimension}",
            value=len(vector),
            expected=manifest.dimension,
            fix="serve with the build-time embedding model, or rebuild the index",
        )
        return
    similarity = cosine(vector, manifest.canary_vector)
    if similarity < CANARY_MIN_COSINE:
        yield finding(
            "RAGPROD-E022",
            f"the canary text embeds differently (cosine {similarity:.4f} < "
            f"{CANARY_MIN_COSINE}): a different model or settings of the same dimension",
            value=round(similarity, 6),
            expected=f">= {CANARY_MIN_COSINE}",
            fix="serve with the build-time embedding model, or rebuild the index",
        )


def _compare_build(ctx: CheckContext, manifest: Manifest) -> Iterator[Finding]:
    from llama_index.core import __version__

    parsers = ctx.node_parsers
    if parsers and manifest.chunking:
        now = _chunking(parsers[0][1])
        if any(now.get(k) != manifest.chunking.get(k) for k in ("chunk_size", "chunk_overlap")):
            yield finding(
                "RAGPROD-W024",
                "chunking differs from the build: new documents will be chunked unlike "
                "the indexed ones",
                value=now,
                expected=dict(manifest.chunking),
                fix="use the build-time node parser settings for ingestion",
            )
        tok = tokenizer_id(getattr(parsers[0][1], "_tokenizer", None))
        if manifest.tokenizer and tok and tok != manifest.tokenizer:
            yield finding(
                "RAGPROD-W029",
                "the tokenizer differs from the build",
                value=tok,
                expected=manifest.tokenizer,
                fix="use the build-time tokenizer",
            )
    if (
        manifest.llama_index_core
        and manifest.llama_index_core.split(".")[:2] != (__version__.split(".")[:2])
    ):
        yield finding(
            "RAGPROD-W025",
            "llama-index-core's minor version differs from the build",
            value=__version__,
            expected=manifest.llama_index_core,
            fix="pin llama-index-core to the build version or rebuild the index",
        )
    if ctx.keyring is not None and manifest.key_ids:
        have = set(getattr(ctx.keyring, "key_ids", ()) or ())
        missing = [k for k in manifest.key_ids if k not in have]
        if missing:
            yield finding(
                "RAGPROD-E026",
                f"{len(missing)} key id(s) the index was sealed with are not in the keyring",
                value=missing,
                expected=list(manifest.key_ids),
                fix="load the keyring that holds these keys (rotation keeps old keys)",
            )


MANIFEST_CHECKS = (check_manifest,)
