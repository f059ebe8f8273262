"""The index manifest: same-dimension model swaps are refused, restarts raise no alarm."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.storage.kvstore import SimpleKVStore
from llama_index.storage.kvstore.redis import RedisKVStore

from ragprod.preflight import (
    HealthCheck,
    Manifest,
    load_manifest,
    validate,
    write_manifest,
)
from ragprod.preflight._manifest import CANARY_MIN_COSINE
from ragprod.testing import HashEmbedding


class ShuffledHash(HashEmbedding):
    """Another model with the same class_name(), model_name and dimension: other vectors."""

    def embed(self, text: str) -> list[float]:
        vector = super().embed(text)
        return vector[1:] + vector[:1]


def test_same_model_passes(index: VectorStoreIndex, tmp_path: Path) -> None:
    """The build-time model reproduces the canary: no finding."""
    path = tmp_path / "manifest.json"
    write_manifest(index, path)
    assert validate(index=index, manifest=path, only=["manifest"]).findings == ()


def test_same_dimension_swap_is_refused(index: VectorStoreIndex, tmp_path: Path) -> None:
    """A different model with the same name and dimension is caught by the canary (E022)."""
    path = tmp_path / "manifest.json"
    write_manifest(index, path)
    engine = index.as_query_engine(embed_model=ShuffledHash(dim=64))
    report = validate(engine=engine, manifest=path, only=["manifest"])
    assert report.codes == ("RAGPROD-E022",)
    assert report.findings[0].value < CANARY_MIN_COSINE  # type: ignore[operator]


def test_ngram_variant_is_refused(index: VectorStoreIndex, tmp_path: Path) -> None:
    """Same class, name and dimension but different settings (ngrams=2) is E022."""
    path = tmp_path / "m.json"
    write_manifest(index, path)
    engine = index.as_query_engine(embed_model=HashEmbedding(dim=64, ngrams=2))
    assert validate(engine=engine, manifest=path, only=["manifest"]).codes == ("RAGPROD-E022",)


def test_different_name_and_dimension(index: VectorStoreIndex, tmp_path: Path) -> None:
    """Another model of another dimension is E021 (identity) and E023 (dimension)."""
    path = tmp_path / "m.json"
    write_manifest(index, path)
    engine = index.as_query_engine(embed_model=HashEmbedding(dim=128))
    report = validate(engine=engine, manifest=path, only=["manifest"])
    assert set(report.codes) == {"RAGPROD-E021", "RAGPROD-E023"}


def test_no_false_alarm_across_restarts(index: VectorStoreIndex, tmp_path: Path) -> None:
    """A fresh process with a fresh model instance validates the manifest clean."""
    path = tmp_path / "m.json"
    write_manifest(index, path)
    index.storage_context.persist(str(tmp_path / "store"))
    code = (
        "from llama_index.core import StorageContext, load_index_from_storage\n"
        "from ragprod.preflight import validate\n"
        "from ragprod.testing import HashEmbedding\n"
        f"sc = StorageContext.from_defaults(persist_dir={str(tmp_path / 'store')!r})\n"
        "index = load_index_from_storage(sc, embed_model=HashEmbedding(dim=64))\n"
        f"r = validate(index=index, manifest={str(path)!r}, only=['manifest'])\n"
        "print(r.to_json())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(out.stdout.strip().splitlines()[-1])["findings"] == []


def test_manifest_in_kvstore(index: VectorStoreIndex) -> None:
    """A manifest stored in a LlamaIndex KV store loads back equal."""
    store = SimpleKVStore()
    written = write_manifest(index, store)
    assert load_manifest(store) == written
    assert validate(index=index, manifest=store, only=["manifest"]).ok


@pytest.mark.redis
def test_manifest_in_redis(
    index: VectorStoreIndex, redis_server_url: str, redis_prefix: str
) -> None:
    """A manifest kept in a real RedisKVStore round-trips."""
    kv = RedisKVStore(redis_uri=redis_server_url)
    manifest = write_manifest(index, kv)
    try:
        assert load_manifest(kv).fingerprint == manifest.fingerprint
    finally:
        kv.delete("ragprod_manifest", collection="ragprod_manifest")


def test_manifest_records_build(index: VectorStoreIndex) -> None:
    """The manifest records model, dimension, tokenizer, chunking, version and key ids."""
    Settings.node_parser = SentenceSplitter(chunk_size=512, chunk_overlap=40)
    ring = SimpleNamespace(key_ids=("k1", "k2"), primary_id="k2")
    m = write_manifest(index, SimpleKVStore(), keyring=ring)
    assert (m.embed_model_class, m.embed_model_name, m.dimension) == (
        "RagprodHashEmbedding",
        "ragprod-hash-64",
        64,
    )
    assert m.chunking == {"parser": "SentenceSplitter", "chunk_size": 512, "chunk_overlap": 40}
    assert m.tokenizer == "tiktoken:cl100k_base"
    assert m.key_ids == ("k1", "k2")
    assert m.llama_index_core.startswith("0.14")
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


def test_chunking_change_warns(index: VectorStoreIndex) -> None:
    """Serving with other chunk settings than the build is W024."""
    Settings.node_parser = SentenceSplitter(chunk_size=512, chunk_overlap=40)
    store = SimpleKVStore()
    write_manifest(index, store)
    Settings.node_parser = SentenceSplitter(chunk_size=256, chunk_overlap=20)
    assert validate(index=index, manifest=store, only=["manifest"]).codes == ("RAGPROD-W024",)


def test_missing_key_ids(index: VectorStoreIndex) -> None:
    """Key ids the index was sealed with but absent from the keyring are E026."""
    store = SimpleKVStore()
    write_manifest(index, store, keyring=SimpleNamespace(key_ids=("old", "new")))
    ring = SimpleNamespace(key_ids=("new",), primary_id="new")
    report = validate(index=index, manifest=store, keyring=ring, only=["manifest"])
    assert report.codes == ("RAGPROD-E026",)
    assert report.findings[0].value == ["old"]


def test_unreadable_manifest(index: VectorStoreIndex, tmp_path: Path) -> None:
    """A missing or corrupt manifest is E027, not a crash."""
    assert validate(index=index, manifest=tmp_path / "no.json", only=["manifest"]).codes == (
        "RAGPROD-E027",
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    assert validate(index=index, manifest=bad, only=["manifest"]).codes == ("RAGPROD-E027",)
    bad.write_text('{"dimension": 3}')
    assert validate(index=index, manifest=bad, only=["manifest"]).codes == ("RAGPROD-E027",)


def test_manifest_from_environment(index: VectorStoreIndex, tmp_path: Path) -> None:
    """RAGPROD_MANIFEST names the manifest when none is passed."""
    path = tmp_path / "m.json"
    write_manifest(index, path)
    engine = index.as_query_engine(embed_model=ShuffledHash(dim=64))
    env = {"RAGPROD_MANIFEST": str(path)}
    assert validate(engine=engine, env=env, only=["manifest"]).codes == ("RAGPROD-E022",)


def test_slow_canary_is_bounded(index: VectorStoreIndex, tmp_path: Path) -> None:
    """A canary embedding slower than the timeout gives W028 instead of blocking."""
    import threading

    release = threading.Event()

    class Stuck(HashEmbedding):
        def embed(self, text: str) -> list[float]:
            release.wait(10)
            return super().embed(text)

    path = tmp_path / "m.json"
    write_manifest(index, path)
    engine = index.as_query_engine(embed_model=Stuck(dim=64))
    try:
        report = validate(engine=engine, manifest=path, timeout=0.05, only=["manifest"])
    finally:
        release.set()
    assert report.codes == ("RAGPROD-W028",)


def test_health_manifest_probe(index: VectorStoreIndex, tmp_path: Path) -> None:
    """HealthCheck(index=, manifest=) is ready only when the index matches its manifest."""
    path = tmp_path / "m.json"
    write_manifest(index, path)
    assert HealthCheck(index=index, manifest=path).ready().ok
    other = VectorStoreIndex.from_documents([], embed_model=ShuffledHash(dim=64))
    status = HealthCheck(index=other, manifest=path).ready()
    assert status.checks["manifest"].status == "fail"


@given(
    st.lists(st.floats(min_value=-1, max_value=1, allow_nan=False), min_size=1, max_size=64),
    st.text(max_size=30),
    st.lists(st.from_regex(r"[A-Za-z0-9_.-]{1,12}", fullmatch=True), max_size=4),
)
def test_manifest_json_round_trip(vector: list[float], name: str, key_ids: list[str]) -> None:
    """Any manifest survives to_dict -> JSON -> from_dict unchanged."""
    m = Manifest(
        embed_model_class="X",
        embed_model_name=name,
        dimension=len(vector),
        canary_vector=tuple(vector),
        key_ids=tuple(key_ids),
        chunking={"chunk_size": 512},
    )
    assert Manifest.from_dict(json.loads(json.dumps(m.to_dict()))) == m


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_cosine_of_a_vector_with_itself(scale: float) -> None:
    """A non-zero vector has cosine 1 with any positive multiple of itself (no false alarm)."""
    from ragprod.preflight._manifest import cosine

    vector = [0.3, -0.2, 0.9, 0.1]
    if abs(scale) > 1e-3:
        assert cosine(vector, [v * abs(scale) for v in vector]) == pytest.approx(1.0)
