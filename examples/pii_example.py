"""PII: pseudonymize documents and queries, restore the answer, streaming included.

Run: python examples/pii_example.py   (offline; no Redis needed)
"""

from __future__ import annotations

import os

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.ingestion import IngestionPipeline

from ragprod.metrics import RagMetrics
from ragprod.pii import PIIAnonymizer, PIIQueryEngine, PIITransform
from ragprod.testing import ExtractiveLLM, HashEmbedding

TICKETS = [
    "Ticket 1: Mr. Jonas Weber (jonas.weber@example.de, +49 30 1234567) asked for a refund "
    "of order #10234567; card 4111 1111 1111 1111 was charged twice at 2024-03-15T14:32:07Z.",
    "Ticket 2: Dear Ms. Amelia Hughes, the parcel to IBAN GB82WEST12345698765432 holder "
    "was re-sent; tracking 1Z999AA10123456784.",
    "Ops note: DATABASE_URL=postgres://app:s3cr3t-Pa55@10.2.3.4:5432/crm must be rotated.",
]


def main() -> None:
    key = os.environ.get("RAGPROD_PII_KEY", "example-key-change-me-0123456789")
    metrics = RagMetrics()
    pii = PIIAnonymizer(key=key, metrics=metrics)

    # 1. Ingestion: documents are pseudonymized before they are embedded and stored.
    nodes = IngestionPipeline(transformations=[PIITransform(pii)]).run(
        documents=[Document(text=t) for t in TICKETS]
    )
    print("stored text (what the vector store and docstore hold):")
    for node in nodes:
        print("  ", node.get_content())

    # 2. Querying: the query is pseudonymized on the way down, the answer restored on the way up.
    index = VectorStoreIndex(nodes, embed_model=HashEmbedding())
    inner = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=1)
    engine = PIIQueryEngine(inner, pii)
    question = "What did jonas.weber@example.de ask for?"
    print("\nquery as the LLM sees it:", pii.anonymize(question).text)
    print("answer as the user sees it:", engine.query(question))

    # 3. Streaming: pseudonyms split across chunks are held back, never leaked half-way.
    streaming = PIIQueryEngine(
        index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=1, streaming=True), pii
    )
    response = streaming.query("Which card was charged twice for jonas.weber@example.de?")
    print("streamed answer:", "".join(response.response_gen))  # type: ignore[union-attr]

    # 4. Metrics count entity types, never values.
    for kind in ("EMAIL_ADDRESS", "PERSON", "CREDIT_CARD", "URL_CREDENTIALS"):
        print(f"  ragprod_pii_entities_total{{type={kind!r}}} =",
              metrics.value("ragprod_pii_entities_total", type=kind))  # fmt: skip


if __name__ == "__main__":
    main()
