"""Checks on storage: dimensions, stores, persistence, Redis, keyring, old APIs."""

from __future__ import annotations

import functools
import inspect
import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ragprod.errors import CryptoError
from ragprod.preflight._check import check, finding
from ragprod.preflight._context import CheckContext
from ragprod.preflight._finding import Finding
from ragprod.preflight._probes import (
    find_redis_clients,
    monotonic,
    ping_redis,
    redact_url,
    run_probe,
)

__all__ = ["STORAGE_CHECKS", "model_dimension", "store_dimension"]

#: Output dimensions of well-known embedding models (read when the object does not say).
EMBED_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


def model_dimension(model: Any) -> int | None:
    """The embedding model's output dimension from its attributes, without calling it."""
    for attr in ("dimensions", "embed_dim", "dim", "embedding_dim", "dimension"):
        value = getattr(model, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return EMBED_DIMS.get(str(getattr(model, "model_name", "")))


def store_dimension(store: Any) -> int | None:
    """The dimension of the vectors a vector store already holds, if it can tell."""
    data = getattr(store, "data", None)
    embeddings = getattr(data, "embedding_dict", None)
    if isinstance(embeddings, dict) and embeddings:
        return len(next(iter(embeddings.values())))
    for attr in ("embed_dim", "dim", "dimension", "_embed_dim", "_dim"):
        value = getattr(store, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


@check("embedding-dimension", "RAGPROD-E020")
def check_dimension(ctx: CheckContext) -> Iterator[Finding]:
    """The embedding model's dimension matches the vectors already in the store."""
    store = ctx.store
    model = ctx.embed_model
    if store is None or model is None:
        return
    have = store_dimension(store)
    if have is None:
        return
    want = model_dimension(model)
    if want is None:
        if not ctx.probes:
            return
        want = len(model.get_text_embedding("ragprod preflight dimension probe"))
    if want != have:
        yield finding(
            "RAGPROD-E020",
            f"the embedding model ({type(model).__name__}) makes {want}-dimension vectors; "
            f"the vector store holds {have}-dimension vectors",
            value=want,
            expected=have,
            fix="query with the model that built the index, or rebuild the index",
        )


def _kv_chain(kvstore: Any) -> Iterator[Any]:
    seen: set[int] = set()
    node = kvstore
    while node is not None and id(node) not in seen:
        seen.add(id(node))
        yield node
        node = getattr(node, "_kvstore", None) or getattr(node, "_inner", None)


def _stores(ctx: CheckContext) -> Iterator[tuple[str, Any]]:
    storage = ctx.storage
    if storage is None:
        return
    for attr in ("docstore", "index_store"):
        store = getattr(storage, attr, None)
        if store is not None:
            yield attr, store


@check("kvstore-async-batch", "RAGPROD-E031")
def check_async_batching(ctx: CheckContext) -> Iterator[Finding]:
    """Stores with batch_size > 1 sit on KV stores that implement async batching.

    Only the KV store the docstore calls matters: a wrapper that overrides
    ``aput_all`` (ragprod's ``EncryptedKVStore`` does) is trusted to batch.
    """
    from llama_index.core.storage.kvstore.types import BaseKVStore

    for where, store in _stores(ctx):
        batch = getattr(store, "_batch_size", 1)
        kv = getattr(store, "_kvstore", None)
        if kv is None or not isinstance(batch, int) or batch == 1:
            continue
        if isinstance(kv, BaseKVStore) and type(kv).aput_all is BaseKVStore.aput_all:
            yield finding(
                "RAGPROD-E031",
                f"{where} uses batch_size {batch} on {type(kv).__name__}, whose async "
                "put_all does not batch: async ingestion raises NotImplementedError",
                value={"store": where, "kvstore": type(kv).__name__, "batch_size": batch},
                expected="batch_size 1, or a KV store that implements aput_all",
                fix="construct the docstore/index store with batch_size=1",
            )


@check("multiple-indexes", "RAGPROD-W032")
def check_multiple_indexes(ctx: CheckContext) -> Iterator[Finding]:
    """Storage holding several indexes is loaded with an explicit index_id."""
    from llama_index.core.storage.kvstore import SimpleKVStore

    if ctx.index_obj is not None or ctx.storage is None:
        return  # an index is loaded already: nothing will be loaded without an id
    index_store = getattr(ctx.storage, "index_store", None)
    kvstore = getattr(index_store, "_kvstore", None)
    collection = getattr(index_store, "_collection", None)
    if kvstore is None or collection is None:
        return
    if not isinstance(kvstore, SimpleKVStore) and not ctx.probes:
        return  # a remote index store is only read with probes=True
    try:
        ids = sorted(kvstore.get_all(collection=collection))
    except Exception:
        return
    if len(ids) > 1:
        yield finding(
            "RAGPROD-W032",
            f"the storage holds {len(ids)} indexes: load_index_from_storage without "
            "index_id raises ValueError",
            value=ids,
            expected="one index, or index_id passed when loading",
            fix="load with load_index_from_storage(storage_context, index_id=...)",
        )


@check("persist-dir", "RAGPROD-E033")
def check_persist_dir(ctx: CheckContext) -> Iterator[Finding]:
    """The persist dir to load from exists and holds a docstore and an index store."""
    if not ctx.persist_dir:
        return
    path = Path(ctx.persist_dir)
    if not path.is_dir():
        yield finding(
            "RAGPROD-E033",
            "the persist dir does not exist: StorageContext.from_defaults(persist_dir=...) "
            "raises FileNotFoundError",
            value=str(path),
            expected="an existing directory written by storage_context.persist()",
            fix="build and persist the index first, or correct the path",
        )
        return
    missing = [n for n in ("docstore.json", "index_store.json") if not (path / n).is_file()]
    if missing:
        yield finding(
            "RAGPROD-E033",
            f"the persist dir lacks {', '.join(missing)}",
            value=str(path),
            expected="docstore.json and index_store.json present",
            fix="persist the index there with storage_context.persist(persist_dir)",
        )


def _redis_targets(ctx: CheckContext) -> list[tuple[str, Any, bool]]:
    """``(label, client-or-url, critical)``: storage Redis is critical, cache Redis is not."""
    targets: list[tuple[str, Any, bool]] = [(redact_url(u), u, True) for u in ctx.redis_urls]
    storage = ctx.storage
    if storage is not None:
        for attr in ("docstore", "index_store", "vector_store"):
            for path, client in find_redis_clients(getattr(storage, attr, None)):
                targets.append((f"{attr}: {path}", client, True))
    if ctx.cache is not None:
        for path, client in find_redis_clients(ctx.cache):
            targets.append((f"cache: {path}", client, False))
    unique: dict[tuple[Any, ...], tuple[str, Any, bool]] = {}
    for label, target, critical in targets:
        key = _address(target)
        old = unique.get(key)
        unique[key] = (label, target, critical or (old is not None and old[2]))
    return list(unique.values())


def _address(target: Any) -> tuple[Any, ...]:
    if isinstance(target, str):
        return ("url", target)
    kw = target.connection_pool.connection_kwargs
    return (kw.get("host"), kw.get("port"), kw.get("db"), kw.get("path"))


@check("redis-reachable", "RAGPROD-E030", "RAGPROD-W030", probe=True)
def check_redis(ctx: CheckContext) -> Iterator[Finding]:
    """Every Redis used by stores and caches answers PING within the timeout (in parallel)."""
    targets = _redis_targets(ctx)
    if not targets:
        return
    if len(targets) == 1:  # no thread needed: the socket timeouts bound the probe
        label, target, _ = targets[0]
        results = [run_probe(label, functools.partial(ping_redis, target, ctx.timeout), monotonic)]
    else:
        results = _parallel(ctx, targets)
    yield from _redis_findings(ctx, targets, results)


def _parallel(ctx: CheckContext, targets: list[tuple[str, Any, bool]]) -> list[Any]:
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        futures = [
            pool.submit(
                run_probe, label, functools.partial(ping_redis, target, ctx.timeout), monotonic
            )
            for label, target, _ in targets
        ]
        return [f.result() for f in futures]


def _redis_findings(
    ctx: CheckContext, targets: list[tuple[str, Any, bool]], results: list[Any]
) -> Iterator[Finding]:
    for (label, _, critical), result in zip(targets, results, strict=True):
        if result.ok:
            continue
        code = "RAGPROD-E030" if critical else "RAGPROD-W030"
        effect = "the first read fails" if critical else "the cache will run in bypass mode"
        yield finding(
            code,
            f"Redis for {label} did not answer PING ({result.status}: {result.detail}, "
            f"timeout {ctx.timeout:g}s); {effect}",
            value={"target": label, "status": result.status},
            expected="PONG",
            fix="check the Redis URL, network and credentials",
        )


@check("keyring", "RAGPROD-E040", "RAGPROD-E042")
def check_keyring(ctx: CheckContext) -> Iterator[Finding]:
    """A keyring has a usable primary key; encrypted stores decrypt a canary record."""
    ring = ctx.keyring
    if ring is not None:
        ids = tuple(getattr(ring, "key_ids", ()) or ())
        primary = getattr(ring, "primary_id", None)
        if not ids or primary not in ids:
            yield finding(
                "RAGPROD-E040",
                "the keyring has no usable primary key",
                value={"key_ids": list(ids), "primary_id": primary},
                expected="a primary key id among the key ids",
                fix="load the keyring from its file/env, or rotate() a new primary",
            )
    if not ctx.probes:
        return
    # One canary read: the index store (one record per index) if it is encrypted,
    # else the docstore's first non-empty collection, smallest first.
    for where, store in sorted(_stores(ctx), key=lambda item: item[0] != "index_store"):
        kv = getattr(store, "_kvstore", None)
        if kv is None or not _looks_encrypted(kv):
            continue
        try:
            for attr in ("_collection", "_ref_doc_collection", "_node_collection"):
                collection = getattr(store, attr, None)
                if isinstance(collection, str) and kv.get_all(collection=collection):
                    break
        except CryptoError as exc:
            yield finding(
                "RAGPROD-E042",
                f"{where}: a stored record does not decrypt ({type(exc).__name__}); "
                "the keyring is not the one the data was sealed with",
                value={"store": where, "key_id": getattr(exc, "key_id", None)},
                expected="every stored key id present in the keyring",
                fix="load the keyring that sealed this data (or restore the retired key)",
            )
        return


def _looks_encrypted(kv: Any) -> bool:
    return any(
        getattr(node, "keyring", None) is not None
        or getattr(node, "_keyring", None) is not None
        or "Encrypted" in type(node).__name__
        for node in _kv_chain(kv)
    )


_UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@check("ingestion-pipeline", "RAGPROD-W034", "RAGPROD-W035")
def check_ingestion(ctx: CheckContext) -> Iterator[Finding]:
    """An ingestion pipeline keeps a docstore, and documents have stable ids."""
    pipeline = ctx.pipeline
    if pipeline is None:
        return
    if getattr(pipeline, "docstore", None) is None:
        yield finding(
            "RAGPROD-W034",
            "the ingestion pipeline has no docstore: every run re-embeds every document and "
            "the vector store collects duplicates",
            value=None,
            expected="a docstore (persisted, or on Redis/Postgres)",
            fix="IngestionPipeline(..., docstore=SimpleDocumentStore()) and persist it",
        )
    sample = list(ctx.documents)[:50]
    random_ids = sum(1 for d in sample if _UUID4.match(str(getattr(d, "id_", ""))))
    if sample and random_ids == len(sample):
        yield finding(
            "RAGPROD-W035",
            f"all {len(sample)} sampled documents have random (uuid4) ids: a re-run cannot "
            "recognise them, so upserts insert duplicates instead of updating",
            value=random_ids,
            expected="stable ids (a path, URL or database key)",
            fix="SimpleDirectoryReader(filename_as_id=True) or Document(doc_id=<stable key>)",
        )


_SERVICE_CONTEXT = re.compile(r"\bServiceContext\b|\bservice_context\s*=")


@check("removed-apis", "RAGPROD-E050")
def check_removed_apis(ctx: CheckContext) -> Iterator[Finding]:
    """Application sources do not use ServiceContext (removed in llama-index 0.11)."""
    for source in ctx.extra.get("sources", ()):
        try:
            if isinstance(source, (str, os.PathLike)):
                path = Path(source)
                text = path.read_text(encoding="utf-8")
                label = path.name
            else:
                text = inspect.getsource(source)
                label = getattr(source, "__name__", type(source).__name__)
        except (OSError, TypeError, UnicodeDecodeError):
            continue
        lines = [i + 1 for i, line in enumerate(text.splitlines()) if _SERVICE_CONTEXT.search(line)]
        if lines:
            yield finding(
                "RAGPROD-E050",
                f"{label} uses ServiceContext, removed in llama-index-core 0.11",
                value={"source": label, "lines": lines[:10]},
                expected="Settings or per-object llm=/embed_model= arguments",
                fix="replace ServiceContext with llama_index.core.Settings",
            )


STORAGE_CHECKS = (
    check_dimension,
    check_async_batching,
    check_multiple_indexes,
    check_persist_dir,
    check_redis,
    check_keyring,
    check_ingestion,
    check_removed_apis,
)
