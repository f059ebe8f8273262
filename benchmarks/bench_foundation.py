"""Cost of ragprod's step shell around a real LlamaIndex query engine."""

from __future__ import annotations

from llama_index.core import Document, VectorStoreIndex

from _harness import Suite
from ragprod._pipeline import StepQueryEngine
from ragprod.testing import ExtractiveLLM, HashEmbedding


def _engine():  # type: ignore[no-untyped-def]
    docs = [
        Document(text=f"Document {i} explains topic {i % 17} and policy {i % 5}.")
        for i in range(200)
    ]
    index = VectorStoreIndex.from_documents(docs, embed_model=HashEmbedding(dim=256))
    return index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=3)


def run(suite: Suite) -> None:
    bare = _engine()
    shell = StepQueryEngine(bare)
    suite.compare(
        "query, empty step shell",
        lambda: bare.query("what does topic 3 explain?"),
        lambda: shell.query("what does topic 3 explain?"),
        baseline_label="bare LlamaIndex query engine",
        note="200 docs, 256-dim HashEmbedding, top_k=3",
    )
