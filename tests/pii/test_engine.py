"""PIIQueryEngine and the harden() step: pseudonymize down, restore up, streams included."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.ingestion import IngestionPipeline
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

from ragprod._pipeline import StepQueryEngine
from ragprod.metrics import RagMetrics
from ragprod.pii import PIIAnonymizer, PIIQueryEngine, PIITransform
from ragprod.pii._step import PIIStep, make_step
from ragprod.testing import ExtractiveLLM, FaultyQueryEngine, HashEmbedding

KEY = b"engine-key-0123456789"
QUERY = "Where is the refund for ana.lima@example.org, card 4111 1111 1111 1111?"


def echo(q: str) -> str:
    return f"Refund for {q} is on its way."


class ChunkedEngine(BaseQueryEngine):
    """Streams a fixed text in chunks cut at the given offsets (sync and async)."""

    def __init__(self, text_of: Any, cuts: list[int]) -> None:
        self.text_of, self.cuts = text_of, cuts
        self.queries: list[str] = []
        super().__init__(callback_manager=None)

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    def _chunks(self, text: str) -> list[str]:
        points = [c for c in self.cuts if 0 < c < len(text)]
        return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        self.queries.append(query_bundle.query_str)
        chunks = self._chunks(self.text_of(query_bundle.query_str))

        def gen() -> Generator[str, None, None]:
            yield from chunks

        return StreamingResponse(response_gen=gen())

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        self.queries.append(query_bundle.query_str)
        chunks = self._chunks(self.text_of(query_bundle.query_str))

        async def agen() -> AsyncGenerator[str, None]:
            for c in chunks:
                yield c

        return AsyncStreamingResponse(response_gen=agen())


def test_query_is_pseudonymized_and_answer_restored(run_query: Any) -> None:
    """The inner engine sees pseudonyms only; the caller gets the original values back."""
    inner = FaultyQueryEngine(answer=echo)
    engine = PIIQueryEngine(inner, PIIAnonymizer(key=KEY))
    response = run_query(engine, QUERY)
    assert str(response) == echo(QUERY)
    seen = inner.queries[-1]
    assert "ana.lima@example.org" not in seen
    assert "4111" not in seen
    assert "@example.invalid" in seen


def test_same_query_gives_same_pseudonymized_query() -> None:
    """Stable pseudonyms: equal queries reach the inner engine (and a cache) equal."""
    inner = FaultyQueryEngine(answer=echo)
    engine = PIIQueryEngine(inner, PIIAnonymizer(key=KEY))
    engine.query(QUERY)
    PIIQueryEngine(inner, PIIAnonymizer(key=KEY)).query(QUERY)
    assert inner.queries[0] == inner.queries[1]


def test_restore_false_leaves_pseudonyms() -> None:
    """With restore=False the answer keeps the pseudonyms."""
    inner = FaultyQueryEngine(answer=echo)
    response = PIIQueryEngine(inner, PIIAnonymizer(key=KEY), restore=False).query(QUERY)
    assert "ana.lima@example.org" not in str(response)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_streaming_word_by_word(mode: str) -> None:
    """Streaming answers are restored; the stream stays a stream."""
    inner = FaultyQueryEngine(answer=echo, streaming=True)
    engine = PIIQueryEngine(inner, PIIAnonymizer(key=KEY))
    if mode == "sync":
        response = engine.query(QUERY)
        assert isinstance(response, StreamingResponse)
        pieces = list(response.response_gen)
    else:

        async def run() -> list[str]:
            response = await engine.aquery(QUERY)
            assert isinstance(response, AsyncStreamingResponse)
            return [p async for p in response.async_response_gen()]

        pieces = asyncio.run(run())
    assert "".join(pieces) == echo(QUERY)
    assert len(pieces) > 3


def test_streaming_split_at_every_point_never_leaks() -> None:
    """Cut the streamed answer at every offset: exact restore, no pseudonym fragment emitted."""
    pii = PIIAnonymizer(key=KEY)
    pseudo = pii.anonymize(QUERY).text
    answer_len = len(echo(pseudo))
    for cut in range(answer_len + 1):
        for mode in ("sync", "async"):
            inner = ChunkedEngine(echo, [cut])
            engine = PIIQueryEngine(inner, pii)
            if mode == "sync":
                pieces = list(engine.query(QUERY).response_gen)  # type: ignore[union-attr]
            else:

                async def run(e: PIIQueryEngine = engine) -> list[str]:
                    r = await e.aquery(QUERY)
                    return [p async for p in r.async_response_gen()]  # type: ignore[union-attr]

                pieces = asyncio.run(run())
            assert "".join(pieces) == echo(QUERY), (cut, mode)
            for piece in pieces:
                assert "@example.invalid" not in piece
                assert "CREDIT_CARD_" not in piece


def test_upstream_failure_propagates_unchanged(run_query: Any) -> None:
    """An upstream error passes through; the raw query never enters the error."""
    inner = FaultyQueryEngine(fail_always=TimeoutError("upstream down"))
    engine = PIIQueryEngine(inner, PIIAnonymizer(key=KEY))
    with pytest.raises(TimeoutError) as info:
        run_query(engine, QUERY)
    assert "ana.lima" not in str(info.value)
    assert "ana.lima" not in inner.queries[-1]


def test_source_nodes_are_restored_without_touching_originals() -> None:
    """Pseudonyms in source nodes are restored in copies; the retrieved node is unchanged."""
    pii = PIIAnonymizer(key=KEY)
    stored = TextNode(text=pii.anonymize("Ticket from ana.lima@example.org").text)

    class WithSources(FaultyQueryEngine):
        def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
            response = super()._query(query_bundle)
            assert isinstance(response, Response)
            response.source_nodes = [NodeWithScore(node=stored, score=1.0)]
            return response

    response = PIIQueryEngine(WithSources(answer="ok"), pii).query("hi")
    assert response.source_nodes[0].node.get_content() == "Ticket from ana.lima@example.org"
    assert "ana.lima" not in stored.get_content()


@pytest.mark.parametrize("streaming", [False, True])
def test_end_to_end_with_anonymized_ingestion(streaming: bool) -> None:
    """Documents anonymized at ingestion, queries pseudonymized: the answer shows real values."""
    pii = PIIAnonymizer(key=KEY)
    docs = [
        Document(text="Refund ticket: customer Mr. Jonas Weber, email jonas.weber@example.de."),
        Document(text="Shipping policy: parcels leave the warehouse within two days."),
    ]
    nodes = IngestionPipeline(transformations=[PIITransform(pii)]).run(documents=docs)
    assert all("jonas.weber@example.de" not in n.get_content() for n in nodes)
    index = VectorStoreIndex(nodes, embed_model=HashEmbedding(dim=64))
    inner = index.as_query_engine(llm=ExtractiveLLM(), streaming=streaming, similarity_top_k=1)
    engine = PIIQueryEngine(inner, pii)
    response = engine.query("What about the refund ticket of jonas.weber@example.de?")
    text = str(response) if not streaming else "".join(response.response_gen)  # type: ignore[union-attr]
    assert "jonas.weber@example.de" in text
    for node in index.docstore.docs.values():
        assert "jonas.weber@example.de" not in node.get_content()


def test_make_step_for_harden() -> None:
    """make_step accepts True or an anonymizer, binds metrics, and works in a StepQueryEngine."""
    metrics = RagMetrics()
    inner = FaultyQueryEngine(answer=echo)
    step = make_step(True, engine=inner, metrics=metrics, name="pii")
    assert isinstance(step, PIIStep)
    shell = StepQueryEngine(inner, [step])
    assert str(shell.query(QUERY)) == echo(QUERY)
    assert metrics.value("ragprod_pii_entities_total", type="CREDIT_CARD") == 1.0
    own = PIIAnonymizer(key=KEY)
    assert make_step(own, engine=inner, metrics=metrics, name="p").anonymizer is own
    assert make_step(step, engine=inner, metrics=metrics, name="p") is step
    with pytest.raises(TypeError):
        make_step("yes", engine=inner, metrics=metrics, name="pii")  # type: ignore[arg-type]


def test_engine_is_a_thin_step_shell() -> None:
    """PIIQueryEngine is a StepQueryEngine with one PII step; repr shows it."""
    engine = PIIQueryEngine(FaultyQueryEngine(), PIIAnonymizer(key=KEY))
    assert isinstance(engine, StepQueryEngine)
    assert [s.name for s in engine.steps] == ["pii"]
    assert "pii" in repr(engine)
    assert engine.anonymizer.vault is not None


def test_custom_embedding_strings_are_pseudonymized() -> None:
    """custom_embedding_strs get pseudonymized along with the query."""
    inner = FaultyQueryEngine(answer="ok")
    seen: list[QueryBundle] = []
    step = PIIStep(PIIAnonymizer(key=KEY))

    def capture(q: QueryBundle) -> RESPONSE_TYPE:
        seen.append(q)
        return inner.query(q)

    step.handle(QueryBundle("q", custom_embedding_strs=["mail ana@example.org"]), capture)
    assert seen[0].custom_embedding_strs is not None
    assert "ana@example.org" not in seen[0].custom_embedding_strs[0]


def test_harden_composes_the_pii_layer() -> None:
    """ragprod.harden(pii=...) runs the PII step (named "pii") in the hardened shell."""
    import ragprod

    inner = FaultyQueryEngine(answer=echo, streaming=True)
    engine = ragprod.harden(inner, tracing=False, pii=PIIAnonymizer(key=KEY), name="support")
    assert "pii" in repr(engine)
    assert "".join(engine.query(QUERY).response_gen) == echo(QUERY)  # type: ignore[union-attr]
    assert "ana.lima" not in inner.queries[-1]


def test_retrieve_and_synthesize_do_not_bypass_the_layer() -> None:
    """retrieve/synthesize on the wrapper pseudonymize the query too (sync and async)."""
    pii = PIIAnonymizer(key=KEY)
    index = VectorStoreIndex(
        [TextNode(text="Refunds go out on Mondays.")], embed_model=HashEmbedding(dim=32)
    )
    seen: list[str] = []

    class Spy(ExtractiveLLM):
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
            seen.append(prompt)
            return super().complete(prompt, formatted=formatted, **kwargs)

    inner = index.as_query_engine(llm=Spy(), similarity_top_k=1)
    engine = PIIQueryEngine(inner, pii)
    bundle = QueryBundle("refunds for ana@example.org?")
    nodes = engine.retrieve(bundle)
    assert nodes
    engine.synthesize(bundle, nodes)
    asyncio.run(engine.asynthesize(bundle, nodes))
    assert seen
    assert all("ana@example.org" not in p for p in seen)
