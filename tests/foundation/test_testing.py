"""ragprod.testing: the offline stand-ins behave like the real things."""

from __future__ import annotations

import asyncio
import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.llms import ChatMessage

from ragprod.testing import ExtractiveLLM, FakeClock, FaultyQueryEngine, HashEmbedding

DOCS = [
    Document(text="Refunds are paid within five business days of approval."),
    Document(text="Passwords rotate every ninety days. Old passwords cannot be reused."),
    Document(text="Redis failover promotes the replica within thirty seconds."),
]
QA_PROMPT = (
    "Context information is below.\n---------------------\n{ctx}\n---------------------\n"
    "Given the context information and not prior knowledge, answer the query.\n"
    "Query: {q}\nAnswer: "
)


# FakeClock -----------------------------------------------------------------


def test_fake_clock_moves_only_when_told() -> None:
    """Reading the clock does not move it; advance and sleep do."""
    clock = FakeClock(10.0)
    assert clock() == clock() == 10.0
    clock.advance(2.5)
    clock.sleep(1.5)
    assert clock() == 14.0
    assert clock.sleeps == [1.5]


def test_fake_clock_rejects_going_backwards() -> None:
    """A monotonic clock cannot be advanced by a negative amount."""
    with pytest.raises(ValueError, match="backwards"):
        FakeClock().advance(-1)


def test_fake_clock_async_sleep_advances() -> None:
    """``asleep`` advances the clock without waiting."""
    clock = FakeClock()
    asyncio.run(clock.asleep(30))
    assert clock() == 30


def test_fake_clock_is_thread_safe() -> None:
    """Concurrent advances are not lost."""
    clock = FakeClock()
    threads = [
        threading.Thread(target=lambda: [clock.advance(1) for _ in range(1000)]) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert clock() == 4000


# HashEmbedding -------------------------------------------------------------


@settings(max_examples=50, deadline=None)
@given(st.text(min_size=0, max_size=200), st.sampled_from([8, 64, 256]))
def test_hash_embedding_is_deterministic_and_normalised(text: str, dim: int) -> None:
    """Same text, same vector; non-empty vectors have unit length."""
    emb = HashEmbedding(dim=dim)
    v1 = emb.get_text_embedding(text)
    assert v1 == HashEmbedding(dim=dim).get_text_embedding(text)
    assert len(v1) == dim
    norm = math.sqrt(sum(x * x for x in v1))
    assert norm == pytest.approx(1.0) or norm == 0.0


def test_hash_embedding_shared_words_are_similar() -> None:
    """Texts sharing words score higher than unrelated texts."""
    emb = HashEmbedding(dim=256)
    q = emb.get_query_embedding("refunds paid")
    related = emb.get_text_embedding(DOCS[0].text)
    unrelated = emb.get_text_embedding(DOCS[2].text)

    def cos(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cos(q, related) > cos(q, unrelated)


def test_hash_embedding_batch_and_async_match_single() -> None:
    """Batch, async and single embeddings agree."""
    emb = HashEmbedding(dim=32, ngrams=2)
    texts = [d.text for d in DOCS]
    single = [emb.get_text_embedding(t) for t in texts]
    assert emb.get_text_embedding_batch(texts) == single
    assert asyncio.run(emb.aget_text_embedding_batch(texts)) == single
    assert asyncio.run(emb.aget_query_embedding(texts[0])) == emb.get_query_embedding(texts[0])
    assert emb.model_name == "ragprod-hash-32"


def test_hash_embedding_rejects_tiny_dimensions() -> None:
    """A dimension below 8 is a validation error."""
    with pytest.raises(ValueError, match="dim"):
        HashEmbedding(dim=2)


# ExtractiveLLM -------------------------------------------------------------


def test_extractive_llm_answers_from_context() -> None:
    """The answer is the context sentence that shares the query's words."""
    llm = ExtractiveLLM(max_sentences=1)
    prompt = QA_PROMPT.format(
        ctx=DOCS[1].text + "\n" + DOCS[0].text, q="How often do passwords rotate?"
    )
    assert llm.complete(prompt).text == "Passwords rotate every ninety days."


def test_extractive_llm_says_when_context_has_no_answer() -> None:
    """No shared words means an explicit no-answer, not a random sentence."""
    llm = ExtractiveLLM()
    prompt = QA_PROMPT.format(ctx=DOCS[0].text, q="zebra migration")
    assert llm.complete(prompt).text == "The context does not contain an answer."


def test_extractive_llm_reports_token_usage() -> None:
    """Usage is reported like hosted LLMs: prompt, completion and total tokens."""
    response = ExtractiveLLM().complete(QA_PROMPT.format(ctx=DOCS[0].text, q="refunds?"))
    usage = response.additional_kwargs
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert usage["completion_tokens"] > 0
    assert response.raw == {"usage": usage}


def test_extractive_llm_streams_the_same_answer() -> None:
    """Streamed deltas join to the non-streamed answer; usage comes on the last chunk."""
    llm = ExtractiveLLM()
    prompt = QA_PROMPT.format(ctx=DOCS[2].text, q="redis failover")
    chunks = list(llm.stream_complete(prompt))
    assert "".join(c.delta or "" for c in chunks) == llm.complete(prompt).text
    assert chunks[-1].additional_kwargs["total_tokens"] > 0

    async def collect() -> str:
        gen = await llm.astream_complete(prompt)
        return "".join([c.delta or "" async for c in gen])

    assert asyncio.run(collect()) == llm.complete(prompt).text


def test_extractive_llm_chat_and_async() -> None:
    """chat/achat/acomplete give the same answer as complete."""
    llm = ExtractiveLLM()
    prompt = QA_PROMPT.format(ctx=DOCS[0].text, q="refunds")
    expected = llm.complete(prompt).text
    assert asyncio.run(llm.acomplete(prompt)).text == expected
    reply = llm.chat([ChatMessage(role="user", content=prompt)])
    assert expected in (reply.message.content or "")


def test_extractive_llm_in_a_real_index_sync_async_streaming() -> None:
    """Through a real VectorStoreIndex, the answer is the relevant document."""
    index = VectorStoreIndex.from_documents(DOCS, embed_model=HashEmbedding())
    engine = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=2)
    expected = "Redis failover promotes the replica within thirty seconds."
    assert str(engine.query("How does Redis failover work?")) == expected
    assert str(asyncio.run(engine.aquery("How does Redis failover work?"))) == expected
    streaming = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=2, streaming=True)
    response = streaming.query("How does Redis failover work?")
    assert isinstance(response, StreamingResponse)
    assert "".join(response.response_gen) == expected


# FaultyQueryEngine ---------------------------------------------------------


def test_faulty_engine_follows_its_failure_script(run_query) -> None:  # type: ignore[no-untyped-def]
    """Calls fail exactly where the script says, and are counted."""
    engine = FaultyQueryEngine(answer="fine", failures=[TimeoutError, None, ConnectionError("x")])
    with pytest.raises(TimeoutError):
        run_query(engine, "a")
    assert str(run_query(engine, "b")) == "fine"
    with pytest.raises(ConnectionError):
        run_query(engine, "c")
    assert str(run_query(engine, "d")) == "fine"
    assert engine.calls == 4
    assert engine.queries == ["a", "b", "c", "d"]


def test_faulty_engine_fail_always_and_callable_answer(run_query) -> None:  # type: ignore[no-untyped-def]
    """fail_always overrides the script; a callable answer sees the query."""
    assert str(run_query(FaultyQueryEngine(answer=str.upper), "hi")) == "HI"
    with pytest.raises(RuntimeError):
        run_query(FaultyQueryEngine(fail_always=RuntimeError("down")), "q")


def test_faulty_engine_latency_uses_injected_sleep() -> None:
    """Latency goes through the injected sleep functions (no real waiting)."""
    clock = FakeClock()
    engine = FaultyQueryEngine(latency=5.0, sleep=clock.sleep, asleep=clock.asleep)
    engine.query("q")
    asyncio.run(engine.aquery("q"))
    assert clock() == 10.0


def test_faulty_engine_streams_sync_and_async() -> None:
    """Streaming mode yields pieces that join back to the answer."""
    engine = FaultyQueryEngine(answer="one two three", streaming=True)
    response = engine.query("q")
    assert isinstance(response, StreamingResponse)
    assert "".join(response.response_gen) == "one two three"

    async def collect() -> str:
        r = await engine.aquery("q")
        assert isinstance(r, AsyncStreamingResponse)
        return "".join([t async for t in r.async_response_gen()])

    assert asyncio.run(collect()) == "one two three"


def test_faulty_engine_rejects_negative_latency() -> None:
    """Negative latency is refused at construction."""
    with pytest.raises(ValueError, match="latency"):
        FaultyQueryEngine(latency=-1)


def test_faulty_engine_plain_response_type() -> None:
    """Non-streaming calls return a plain Response."""
    assert isinstance(FaultyQueryEngine().query("q"), Response)
