"""PIINodePostprocessor and PIITransform inside LlamaIndex."""

from __future__ import annotations

import asyncio

from llama_index.core import Document
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import NodeWithScore, TextNode

from ragprod.pii import PIIAnonymizer, PIINodePostprocessor, PIITransform

KEY = b"llama-key-0123456789"


def test_postprocessor_masks_copies_sync_and_async() -> None:
    """Nodes are anonymized in copies, sync and async; nodes without PII pass unchanged."""
    pp = PIINodePostprocessor(PIIAnonymizer(key=KEY, operator="replace"))
    original = TextNode(text="Call +44 20 7946 0958 or mail ana@example.org")
    clean = NodeWithScore(node=TextNode(text="no pii here"), score=0.5)
    nodes = [NodeWithScore(node=original, score=0.9), clean]
    out = pp.postprocess_nodes(nodes, query_str="q")
    assert out[0].node.get_content() == "Call <PHONE_NUMBER> or mail <EMAIL_ADDRESS>"
    assert out[0].score == 0.9
    assert out[1] is clean
    assert "ana@example.org" in original.get_content()
    aout = asyncio.run(pp.apostprocess_nodes(nodes, query_str="q"))
    assert [n.node.get_content() for n in aout] == [n.node.get_content() for n in out]


def test_postprocessor_default_pseudonymizes_and_restores() -> None:
    """The default postprocessor pseudonymizes; the shared vault restores."""
    pp = PIINodePostprocessor()
    out = pp.postprocess_nodes([NodeWithScore(node=TextNode(text="mail ana@example.org"))])
    assert pp.anonymizer.deanonymize(out[0].node.get_content()) == "mail ana@example.org"


def test_transform_in_ingestion_pipeline_with_metadata() -> None:
    """PIITransform anonymizes text and chosen metadata before splitting and storage."""
    pii = PIIAnonymizer(key=KEY, operator="replace")
    pipeline = IngestionPipeline(
        transformations=[
            SentenceSplitter(chunk_size=64, chunk_overlap=0, tokenizer=str.split),
            PIITransform(pii, metadata_keys=["author"]),
        ]
    )
    doc = Document(text="Refund for ana@example.org. " * 8, metadata={"author": "bob@example.org"})
    nodes = pipeline.run(documents=[doc])
    assert nodes
    for node in nodes:
        assert "@example.org" not in node.get_content()
        assert node.metadata["author"] == "<EMAIL_ADDRESS>"
    anodes = asyncio.run(PIITransform(pii).acall([Document(text="ana@example.org")]))
    assert anodes[0].get_content() == "<EMAIL_ADDRESS>"


def test_components_serialise_without_values() -> None:
    """LlamaIndex serialisation of the components works and carries no secrets or vault."""
    t = PIITransform(PIIAnonymizer(key=KEY), metadata_keys=["a"])
    data = t.to_dict()
    assert data["class_name"] == "PIITransform"
    assert "llama-key" not in str(data)
    other = PIITransform(PIIAnonymizer(key=b"another-key-0123456789"), metadata_keys=["a"])
    assert other.to_dict()["config_id"] != data["config_id"]  # distinct IngestionCache entries
    assert PIINodePostprocessor.class_name() == "PIINodePostprocessor"
