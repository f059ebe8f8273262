"""Fixtures for preflight tests: LlamaIndex's global Settings restored after each test."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import llama_index.core
import pytest
from llama_index.core import Document, Settings, VectorStoreIndex

from ragprod.testing import ExtractiveLLM, HashEmbedding

_SLOTS = (
    "_llm",
    "_embed_model",
    "_callback_manager",
    "_tokenizer",
    "_node_parser",
    "_prompt_helper",
    "_chat_prompt_helper",
    "_transformations",
)


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts with empty LlamaIndex Settings and gets the old ones back after."""
    saved = {name: getattr(Settings, name) for name in _SLOTS}
    saved_tokenizer = llama_index.core.global_tokenizer
    for name in _SLOTS:
        if name not in ("_callback_manager", "_tokenizer"):
            setattr(Settings, name, None)
    monkeypatch.delenv("IS_TESTING", raising=False)
    for var in ("RAGPROD_REDIS_URL", "RAGPROD_PERSIST_DIR", "RAGPROD_MANIFEST", "RAGPROD_APP"):
        monkeypatch.delenv(var, raising=False)
    yield
    for name, value in saved.items():
        setattr(Settings, name, value)
    llama_index.core.global_tokenizer = saved_tokenizer


@pytest.fixture
def configured() -> None:
    """Settings with a real offline LLM and embedding model (a clean baseline)."""
    Settings.llm = ExtractiveLLM()
    Settings.embed_model = HashEmbedding(dim=64)


DOCS = [
    Document(text=f"Document {i} explains refund policy {i % 5} and Redis failover {i % 3}.")
    for i in range(12)
]


@pytest.fixture
def index(configured: None) -> VectorStoreIndex:
    """A small real index built with HashEmbedding(dim=64)."""
    return VectorStoreIndex.from_documents(copy.deepcopy(DOCS), embed_model=HashEmbedding(dim=64))
