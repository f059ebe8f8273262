"""Regression matrix, chunking and token budget, reproduced on real LlamaIndex objects."""

from __future__ import annotations

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter

from ragprod._pipeline import StepQueryEngine
from ragprod.preflight import validate
from ragprod.testing import ExtractiveLLM, HashEmbedding

LONG_TEXT = " ".join(f"Sentence {i} talks about refunds and failover." for i in range(400))


def test_chunk_size_setter_bypasses_overlap_check(configured: None) -> None:
    """Settings.chunk_size = 128 keeps overlap 200 silently (many more nodes); E010 catches it."""
    Settings.chunk_size = 128
    assert Settings.chunk_overlap == 200  # LlamaIndex accepted it
    normal = SentenceSplitter().get_nodes_from_documents([Document(text=LONG_TEXT)])
    broken = Settings.node_parser.get_nodes_from_documents([Document(text=LONG_TEXT)])
    assert len(broken) > 5 * len(normal)
    (f,) = validate(only=["chunk-overlap"]).findings
    assert f.code == "RAGPROD-E010"
    assert f.value == {"where": "Settings.node_parser", "chunk_size": 128, "chunk_overlap": 200}


def test_overlap_in_transformations(configured: None) -> None:
    """A parser in Settings.transformations with overlap >= size is reported with its position."""
    splitter = SentenceSplitter(chunk_size=256, chunk_overlap=20)
    splitter.chunk_overlap = 300
    Settings.transformations = [splitter]
    (f,) = validate(only=["chunk-overlap"]).findings
    assert f.code == "RAGPROD-E010"
    assert "Settings.transformations[0]" in f.message


def test_valid_chunking_passes(configured: None) -> None:
    """Constructor-checked settings produce no chunk finding."""
    Settings.node_parser = SentenceSplitter(chunk_size=512, chunk_overlap=50)
    assert validate(only=["chunk-overlap", "metadata-length"]).findings == ()


def test_stale_context_window(configured: None) -> None:
    """Reading Settings.context_window before setting the LLM caches 3900: W013."""
    Settings._llm = None
    assert Settings.context_window == 3900
    Settings.llm = ExtractiveLLM(context_window=131072)
    assert Settings.context_window == 3900  # stale: LlamaIndex keeps the cached helper
    report = validate(only=["prompt-helper"])
    assert report.codes == ("RAGPROD-W013",)
    assert report.findings[0].expected == 131072


def test_context_window_larger_than_llm(configured: None) -> None:
    """A context_window above the LLM's real one overflows the model: E013."""
    Settings.llm = ExtractiveLLM(context_window=4096)
    Settings.context_window = 32000
    assert validate(only=["prompt-helper"]).codes == ("RAGPROD-E013",)


def test_fresh_prompt_helper_passes(configured: None) -> None:
    """A prompt helper derived from the current LLM is not stale."""
    Settings.llm = ExtractiveLLM(context_window=8192)
    assert Settings.context_window == 8192
    assert validate(only=["prompt-helper"]).findings == ()


def test_no_room_for_context_fails_first_query(index: VectorStoreIndex) -> None:
    """Template + num_output over the window: the real query raises; validate says E011 first."""
    engine = index.as_query_engine(llm=ExtractiveLLM(context_window=300, num_output=256))
    with pytest.raises(ValueError, match="not non-negative"):
        engine.query("refund policy?")
    report = validate(engine=engine, only=["token-budget"])
    assert "RAGPROD-E011" in report.codes
    assert report.findings[0].value["context_window"] == 300  # type: ignore[index]


def test_top_k_times_chunk_exceeds_budget(index: VectorStoreIndex) -> None:
    """top_k x chunk_size beyond the available context is W011 with the numbers."""
    Settings.node_parser = SentenceSplitter(chunk_size=1024, chunk_overlap=100)
    engine = index.as_query_engine(
        llm=ExtractiveLLM(context_window=4096, num_output=256), similarity_top_k=8
    )
    report = validate(engine=engine, only=["token-budget"])
    assert report.codes == ("RAGPROD-W011",)
    assert report.findings[0].value["needed"] == 8 * 1024  # type: ignore[index]


def test_budget_through_ragprod_shell(index: VectorStoreIndex) -> None:
    """ragprod's StepQueryEngine shell is unwrapped to find top_k and the LLM."""
    engine = index.as_query_engine(llm=ExtractiveLLM(context_window=2048), similarity_top_k=6)
    report = validate(engine=StepQueryEngine(engine), only=["token-budget"])
    assert report.codes == ("RAGPROD-W011",)


def test_num_output_over_half_the_window(configured: None) -> None:
    """num_output above context_window / 2 is W012."""
    Settings.llm = ExtractiveLLM(context_window=4096, num_output=3000)
    assert "RAGPROD-W012" in validate(only=["token-budget"]).codes


def test_comfortable_budget_passes(index: VectorStoreIndex) -> None:
    """Default chunking with top_k 2 on a 16k window produces no budget finding."""
    engine = index.as_query_engine(llm=ExtractiveLLM(context_window=16384))
    assert validate(engine=engine, only=["token-budget"]).findings == ()


def test_metadata_longer_than_chunk(configured: None) -> None:
    """Metadata longer than chunk_size raises at ingestion; validate reports E015 before."""
    Settings.node_parser = SentenceSplitter(chunk_size=64, chunk_overlap=8)
    docs = [Document(text="short body", metadata={"summary": "word " * 200})]
    with pytest.raises(ValueError, match="Metadata length"):
        VectorStoreIndex.from_documents(docs)
    report = validate(documents=docs, only=["metadata-length"])
    assert report.codes == ("RAGPROD-E015",)


def test_metadata_close_to_chunk(configured: None) -> None:
    """Metadata leaving under 50 tokens of text per chunk is W015."""
    Settings.node_parser = SentenceSplitter(chunk_size=128, chunk_overlap=8)
    docs = [Document(text="body", metadata={"summary": "word " * 100})]
    assert validate(documents=docs, only=["metadata-length"]).codes == ("RAGPROD-W015",)


def test_chunk_above_embedding_limit(configured: None) -> None:
    """chunk_size above a known embedding model's max input is W014."""
    Settings.embed_model = HashEmbedding(dim=64, model_name="BAAI/bge-small-en-v1.5")
    Settings.node_parser = SentenceSplitter(chunk_size=1024, chunk_overlap=100)
    report = validate(only=["embed-max-length"])
    assert report.codes == ("RAGPROD-W014",)
    assert report.findings[0].expected == "<= 512"


def test_transformations_keep_the_old_parser(configured: None) -> None:
    """Replacing Settings.node_parser after first ingestion leaves the old one in use: W016."""
    VectorStoreIndex.from_documents([Document(text="first ingestion caches transformations")])
    old = Settings.transformations[0]
    Settings.node_parser = SentenceSplitter(chunk_size=256, chunk_overlap=20)
    assert Settings.transformations == [old]  # ingestion would still use the old parser
    assert validate(only=["stale-transformations"]).codes == ("RAGPROD-W016",)
    Settings.transformations = [Settings.node_parser]
    assert validate(only=["stale-transformations"]).findings == ()


def test_stale_chat_context_window(configured: None) -> None:
    """Settings.chat_context_window read before the LLM is set is stale too: W013."""
    Settings._llm = None
    assert Settings.chat_context_window == 3900
    Settings.llm = ExtractiveLLM(context_window=65536)
    report = validate(only=["prompt-helper"])
    assert report.codes == ("RAGPROD-W013",)
    assert "Settings (chat)" in report.findings[0].message
