"""Cache keys: stable, sensitive to every component, free of user text."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from llama_index.core import Document, PromptTemplate, VectorStoreIndex
from llama_index.core.postprocessor import SimilarityPostprocessor
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters

from ragprod.cache import cache_key, fingerprint
from ragprod.cache._keys import KeySpace
from ragprod.testing import ExtractiveLLM, HashEmbedding

COMPONENTS = ("query", "kind", "namespace", "generation", "tenant", "fingerprint", "params")
text = st.text(max_size=40)
components = st.fixed_dictionaries(
    {
        "query": text,
        "kind": text,
        "namespace": text,
        "generation": st.integers(0, 10**6),
        "tenant": st.none() | st.text(min_size=1, max_size=20),
        "fingerprint": text,
        "params": st.none() | st.dictionaries(st.text(max_size=5), st.integers(), min_size=1),
    }
)


def key_of(c: dict[str, Any]) -> str:
    return cache_key(
        c["query"],
        kind=c["kind"],
        namespace=c["namespace"],
        generation=c["generation"],
        tenant=c["tenant"],
        fingerprint=c["fingerprint"],
        params=c["params"],
    )


@settings(max_examples=200, deadline=None)
@given(components)
def test_keys_are_deterministic_hex_digests(c: dict[str, Any]) -> None:
    """The same components give the same 64-hex-character key."""
    key = key_of(c)
    assert key == key_of(dict(c))
    assert len(key) == 64
    assert int(key, 16) >= 0


@settings(max_examples=300, deadline=None)
@given(components, components, st.sampled_from(COMPONENTS))
def test_changing_any_component_changes_the_key(
    a: dict[str, Any], b: dict[str, Any], field: str
) -> None:
    """Replacing one component with a different value gives a different key."""
    changed = {**a, field: b[field]}
    assume(changed[field] != a[field])
    assume(not (field == "params" and not changed[field] and not a[field]))
    assert key_of(changed) != key_of(a)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_component_boundaries_are_unambiguous(left: str, right: str) -> None:
    """Moving characters between adjacent components never yields the same key."""
    assume(len(left) > 1)
    assert cache_key(right, namespace=left) != cache_key(left[1:] + right, namespace=left[:1])


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz@. 0123456789", min_size=8, max_size=60))
def test_keys_never_contain_the_query(query: str) -> None:
    """The query text (e.g. an e-mail address) is not recoverable from the key."""
    key = cache_key(query, tenant="acme")
    assert query not in key
    assert query.encode().hex() not in key


def test_keyspace_matches_cache_key() -> None:
    """A KeySpace (constant part hashed once) builds exactly cache_key's keys."""
    space = KeySpace("query", "docs", "fp", {"top_k": 3})
    expected = cache_key(
        "q?", kind="query", namespace="docs", generation="4.0", tenant="t", fingerprint="fp",
        params={"top_k": 3},
    )  # fmt: skip
    assert space.key("q?", "4.0", "t") == expected


def test_lone_surrogates_are_keyed() -> None:
    """Text that is not valid UTF-8 still gets a key (no UnicodeEncodeError)."""
    assert cache_key("bad \ud800") != cache_key("bad \ud801")


@pytest.fixture(scope="module")
def index() -> VectorStoreIndex:
    docs = [Document(text=f"Document {i} explains topic {i % 5}.") for i in range(12)]
    return VectorStoreIndex.from_documents(docs, embed_model=HashEmbedding(dim=32))


def engine_fp(index: VectorStoreIndex, **kwargs: Any) -> str:
    kwargs.setdefault("llm", ExtractiveLLM())
    return fingerprint(index.as_query_engine(**kwargs))


def test_fingerprint_is_stable_for_equal_configurations(index: VectorStoreIndex) -> None:
    """Two engines built the same way over the same index share a fingerprint."""
    assert engine_fp(index, similarity_top_k=2) == engine_fp(index, similarity_top_k=2)


@pytest.mark.parametrize(
    "change",
    [
        {"similarity_top_k": 3},
        {"response_mode": "tree_summarize"},
        {"filters": MetadataFilters(filters=[MetadataFilter(key="lang", value="en")])},
        {"node_postprocessors": [SimilarityPostprocessor(similarity_cutoff=0.5)]},
        {"text_qa_template": PromptTemplate("Answer briefly: {context_str} {query_str}")},
        {"llm": ExtractiveLLM(max_sentences=1)},
        {"vector_store_query_mode": "mmr"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_fingerprint_changes_with_each_engine_setting(
    index: VectorStoreIndex, change: dict[str, Any]
) -> None:
    """Retriever top_k, response mode, filters, postprocessors, prompts, LLM and mode all count."""
    assert engine_fp(index, **{"similarity_top_k": 2, **change}) != engine_fp(
        index, similarity_top_k=2
    )


def test_engines_over_different_indexes_differ(index: VectorStoreIndex) -> None:
    """The same configuration over another index gets another fingerprint."""
    other = VectorStoreIndex.from_documents(
        [Document(text="something else")], embed_model=HashEmbedding(dim=32)
    )
    assert engine_fp(index) != engine_fp(other)


def test_embedding_model_identity_is_in_the_fingerprint() -> None:
    """Model name and dimension change the fingerprint; equal models share it."""
    assert fingerprint(HashEmbedding(dim=64)) == fingerprint(HashEmbedding(dim=64))
    assert fingerprint(HashEmbedding(dim=64)) != fingerprint(HashEmbedding(dim=128))
    assert fingerprint(HashEmbedding(dim=64)) != fingerprint(
        HashEmbedding(dim=64, model_name="other")
    )


def test_fingerprint_ignores_secrets() -> None:
    """An API key does not enter the fingerprint (rotating it keeps the cache)."""
    a, b = ExtractiveLLM(), ExtractiveLLM()
    assert fingerprint({"api_key": "sk-1", "model": "m"}) == fingerprint(
        {"api_key": "sk-2", "model": "m"}
    )
    assert fingerprint(a) == fingerprint(b)


def test_fingerprint_is_the_same_in_another_process() -> None:
    """A fresh interpreter computes the same model fingerprint (no addresses, no seeds)."""
    code = (
        "from ragprod.cache import fingerprint; from ragprod.testing import HashEmbedding;"
        "print(fingerprint(HashEmbedding(dim=48)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == fingerprint(HashEmbedding(dim=48))
