"""Quickstart: a real LlamaIndex index with ragprod's offline stand-ins.

Run: python examples/quickstart.py
"""

from __future__ import annotations

from llama_index.core import Document, VectorStoreIndex

from ragprod.testing import ExtractiveLLM, HashEmbedding


def main() -> None:
    index = VectorStoreIndex.from_documents(
        [
            Document(text="Refunds are paid within five business days."),
            Document(text="Passwords rotate every ninety days."),
        ],
        embed_model=HashEmbedding(),
    )
    engine = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=1)
    response = engine.query("When are refunds paid?")
    print(response)
    for source in response.source_nodes:
        print(f"  source score {source.score:.3f}: {source.node.get_content()[:60]}")


if __name__ == "__main__":
    main()
