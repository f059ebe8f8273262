"""harden() end to end: every layer on, a real index, real OTel SDK, real Redis.

The story DESIGN.md promises: a query with PII is pseudonymized before the
cache key and the LLM and restored in the answer; spans, logs, metric labels
and Redis hold no raw PII; a repeated query is a cache hit, in another process
too (through L2); an outage opens the breaker and the fallback answers; sync,
async and streaming all work.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.node_parser import SentenceSplitter
from llama_index.core.schema import QueryBundle
from prometheus_client import generate_latest

import ragprod
from ragprod.cache import MemoryCache, RedisCache, TieredCache
from ragprod.errors import CircuitOpenError
from ragprod.pii import PIIAnonymizer, PIINodePostprocessor, PIITransform
from ragprod.resilience import CircuitBreaker, Resilience
from ragprod.testing import (
    ExtractiveLLM,
    FaultyQueryEngine,
    HashEmbedding,
    capture_logs,
    capture_metrics,
    capture_spans,
)
from ragprod.tracing import Tracing

KEY = b"e2e-test-pseudonym-key-32-bytes!"
EMAIL = "priya.raman@example.com"
PHONE = "+1 415 555 0199"
DOCS = (
    f"Refund case 1182: the customer wrote from {EMAIL} and asked where her refund is. "
    "Refunds are paid within five business days.",
    "Redis failover promotes the replica within thirty seconds.",
    "Passwords rotate every ninety days.",
)
# "Dr. Priya Raman" is caught by the PII layer's name detector but not by the
# tracing layer's own regex scrubber: harden() must share the detectors.
QUESTION = f"Dr. Priya Raman asks where the refund for {EMAIL} is. Call me at {PHONE}."
RAW = (EMAIL, "priya.raman", "Priya Raman", "415 555 0199", "4155550199")


class RecordingLLM(ExtractiveLLM):
    """The extractive stand-in that also keeps every prompt it was sent."""

    prompts: list[str] = []  # noqa: RUF012 - pydantic field, one list per instance

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        self.prompts.append(prompt)
        return super().complete(prompt, formatted=formatted, **kwargs)


# The subprocess builds the same hardened engine against the same Redis prefix
# with a cold L1 and prints what it got back.
OTHER_PROCESS = textwrap.dedent(
    """
    import json, sys
    from tests.harden.test_end_to_end import build_engine
    engine, metrics = build_engine(sys.argv[1], sys.argv[2])
    response = engine.query(sys.argv[3])
    print(json.dumps({
        "answer": str(response),
        "hits": metrics.value("ragprod_cache_queries_total", engine="e2e", outcome="hit"),
        "misses": metrics.value("ragprod_cache_queries_total", engine="e2e", outcome="miss"),
    }))
    """
)


def build_index(anonymizer: PIIAnonymizer) -> VectorStoreIndex:
    index = VectorStoreIndex.from_documents(
        [Document(text=t, doc_id=f"doc-{i}") for i, t in enumerate(DOCS)],
        embed_model=HashEmbedding(),
        transformations=[
            SentenceSplitter(chunk_size=512, id_func=lambda i, doc: f"{doc.doc_id}-{i}"),
            PIITransform(anonymizer),
        ],
    )
    # The cache keys on the engine's configuration, which includes the index's
    # id and node ids: processes that each build the index share L2 entries
    # only when both are stable (or when they load the index from storage).
    index.set_index_id("e2e-index")
    return index


def build_engine(
    redis_url: str, prefix: str, *, streaming: bool = False, tracer_provider: Any = None
) -> tuple[ragprod.HardenedQueryEngine, ragprod.RagMetrics]:
    anonymizer = PIIAnonymizer(key=KEY)
    metrics = capture_metrics()
    llm = RecordingLLM(prompts=[])
    engine = ragprod.harden(
        build_index(anonymizer),
        tracing=Tracing(tracer_provider=tracer_provider, capture_content=True),
        guard=True,
        pii=anonymizer,
        cache=TieredCache(MemoryCache(), RedisCache(redis_url, prefix=prefix)),
        resilience=Resilience(retry=False, timeout=10.0),
        metrics=metrics,
        name="e2e",
        llm=llm,
        similarity_top_k=1,
        streaming=streaming,
    )
    return engine, metrics


def leaks(text: str) -> list[str]:
    lowered = text.lower().replace(" ", "").replace("-", "")
    return [raw for raw in RAW if raw.lower().replace(" ", "") in lowered]


def redis_dump(url: str, prefix: str) -> str:
    client = redis.Redis.from_url(url)
    try:
        parts = []
        for key in client.scan_iter(match=f"{prefix}*"):
            parts.append(key.decode("utf-8", "replace"))
            if client.type(key) == b"string":
                value = client.get(key) or b""
                parts.append(value.decode("utf-8", "replace"))
        return "\n".join(parts)
    finally:
        client.close()


def llm_of(engine: ragprod.HardenedQueryEngine) -> RecordingLLM:
    llm = engine.engine._response_synthesizer._llm
    assert isinstance(llm, RecordingLLM)
    return llm


@pytest.fixture
def hardened(
    redis_server_url: str, redis_prefix: str
) -> Iterator[tuple[ragprod.HardenedQueryEngine, ragprod.RagMetrics, Any]]:
    with capture_spans() as captured:
        engine, metrics = build_engine(
            redis_server_url, redis_prefix, tracer_provider=captured.provider
        )
        yield engine, metrics, captured


def test_pii_is_pseudonymized_below_and_restored_above(
    hardened: tuple[ragprod.HardenedQueryEngine, ragprod.RagMetrics, Any],
    redis_server_url: str,
    redis_prefix: str,
) -> None:
    engine, metrics, captured = hardened
    with capture_logs() as logs:
        response = engine.query(QUESTION)

    # The user gets the real values back; the answer came from the right document.
    assert "five business days" in str(response)
    assert EMAIL in str(response)
    # The LLM saw pseudonyms only (the query's and the document's are the same one).
    prompts = "\n".join(llm_of(engine).prompts)
    assert prompts, "the LLM was not called"
    assert leaks(prompts) == []
    pseudonym = PIIAnonymizer(key=KEY).anonymize(EMAIL).text
    assert pseudonym != EMAIL
    assert prompts.count(pseudonym) >= 2  # once in the query, once in the context

    # Spans capture content (capture_content=True) but scrubbed; logs, metrics, Redis clean.
    span_text = json.dumps(
        [{"name": s.name, **dict(s.attributes or {})} for s in captured.spans], default=str
    )
    assert "ragprod.query" in span_text or captured.spans
    assert leaks(span_text) == []
    assert leaks(json.dumps(logs, default=str)) == []
    assert leaks(generate_latest(metrics.registry).decode()) == []
    stored = redis_dump(redis_server_url, redis_prefix)
    assert ":v:" in stored, "the answer was not written to L2"
    assert leaks(stored) == []
    assert pseudonym in stored  # what Redis holds is the pseudonymized answer


def test_repeat_is_a_hit_here_and_in_another_process(
    hardened: tuple[ragprod.HardenedQueryEngine, ragprod.RagMetrics, Any],
    redis_server_url: str,
    redis_prefix: str,
) -> None:
    engine, metrics, _ = hardened
    first = str(engine.query(QUESTION))
    calls = len(llm_of(engine).prompts)
    second = str(engine.query(QUESTION))
    assert second == first
    assert len(llm_of(engine).prompts) == calls  # served without the LLM
    assert metrics.value("ragprod_cache_queries_total", engine="e2e", outcome="hit") == 1

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-c", OTHER_PROCESS, redis_server_url, redis_prefix, QUESTION],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    other = json.loads(proc.stdout.strip().splitlines()[-1])
    assert other["answer"] == first  # restored with the other process's own anonymizer
    assert other["hits"] == 1
    assert not other["misses"]  # served from L2: the other process never computed it


async def test_async_path_matches_sync(
    hardened: tuple[ragprod.HardenedQueryEngine, ragprod.RagMetrics, Any],
) -> None:
    engine, metrics, _ = hardened
    first = await engine.aquery(QUESTION)
    again = await engine.aquery(QUESTION)
    assert EMAIL in str(first)
    assert str(again) == str(first)
    assert leaks("\n".join(llm_of(engine).prompts)) == []
    assert metrics.value("ragprod_cache_queries_total", engine="e2e", outcome="hit") == 1


def test_streaming_restores_pii_and_replays_from_cache(
    redis_server_url: str, redis_prefix: str
) -> None:
    engine, metrics = build_engine(redis_server_url, redis_prefix, streaming=True)
    response = engine.query(QUESTION)
    assert isinstance(response, StreamingResponse)
    chunks = list(response.response_gen)
    text = "".join(chunks)
    assert EMAIL in text
    assert len(chunks) > 1  # it really streamed
    assert leaks("\n".join(llm_of(engine).prompts)) == []

    replay = engine.query(QUESTION)
    assert isinstance(replay, StreamingResponse)
    assert "".join(replay.response_gen) == text
    assert metrics.value("ragprod_cache_queries_total", engine="e2e", outcome="hit") == 1


async def test_async_streaming(redis_server_url: str, redis_prefix: str) -> None:
    engine, _ = build_engine(redis_server_url, redis_prefix, streaming=True)
    response = await engine.aquery(QUESTION)
    assert isinstance(response, AsyncStreamingResponse)
    text = "".join([chunk async for chunk in response.async_response_gen()])
    assert EMAIL in text


def outage_engine(fallback: Any) -> tuple[ragprod.HardenedQueryEngine, FaultyQueryEngine]:
    upstream = FaultyQueryEngine(lambda q: f"answer to {q}", fail_always=ConnectionError)
    breaker = CircuitBreaker("e2e", minimum_calls=3, window_size=3, open_duration=60.0)
    engine = ragprod.harden(
        upstream,
        tracing=True,
        guard=True,
        pii=PIIAnonymizer(key=KEY),
        cache=MemoryCache(),
        resilience=Resilience(breaker=breaker, retry=False, timeout=5.0, fallback=fallback),
        name="e2e-outage",
    )
    return engine, upstream


def test_outage_opens_the_breaker_and_the_fallback_answers() -> None:
    engine, upstream = outage_engine("The service is degraded; please retry shortly.")
    answers = [str(engine.query(f"question {i} from {EMAIL}")) for i in range(6)]
    assert set(answers) == {"The service is degraded; please retry shortly."}
    assert upstream.calls == 3  # the breaker opened after three failures
    metrics = engine.metrics
    assert leaks(generate_latest(metrics.registry).decode()) == []
    assert leaks("\n".join(upstream.queries)) == []  # the upstream saw pseudonyms only
    # Fallback answers are not cached: the upstream is tried again once it recovers.
    assert metrics.value("ragprod_cache_queries_total", engine="e2e-outage", outcome="hit") in (
        None,
        0.0,
    )


def test_outage_without_fallback_is_a_typed_error() -> None:
    engine, upstream = outage_engine(None)
    for i in range(3):
        with pytest.raises(ConnectionError):
            engine.query(f"q{i}")
    with pytest.raises(CircuitOpenError) as info:
        asyncio.run(engine.aquery("q4"))
    assert info.value.retry_after is not None
    assert upstream.calls == 3


def test_redis_down_degrades_to_l1(dead_redis_url: str) -> None:
    anonymizer = PIIAnonymizer(key=KEY)
    engine = ragprod.harden(
        build_index(anonymizer),
        pii=anonymizer,
        cache=TieredCache(MemoryCache(), RedisCache(dead_redis_url, prefix="e2e-dead")),
        resilience=True,
        llm=ExtractiveLLM(),
        similarity_top_k=1,
        name="e2e-dead",
    )
    first = engine.query(QUESTION)
    assert isinstance(first, Response)
    assert EMAIL in str(first)
    assert str(engine.query(QUESTION)) == str(first)
    hits = engine.metrics.value("ragprod_cache_queries_total", engine="e2e-dead", outcome="hit")
    assert hits == 1


def test_response_metadata_is_restored_but_the_cache_keeps_pseudonyms(
    redis_server_url: str, redis_prefix: str
) -> None:
    """Metadata that reached the LLM pseudonymized comes back restored; L1 and L2 do not."""
    anonymizer = PIIAnonymizer(key=KEY)
    title = "Complaint from Ms. Priya Raman"
    index = VectorStoreIndex.from_documents(
        [Document(text="Refunds are paid within five business days.", metadata={"title": title})],
        embed_model=HashEmbedding(),
    )
    cache = TieredCache(MemoryCache(), RedisCache(redis_server_url, prefix=redis_prefix))
    llm = RecordingLLM(prompts=[])
    engine = ragprod.harden(
        index,
        pii=anonymizer,
        cache=cache,
        llm=llm,
        similarity_top_k=1,
        node_postprocessors=[PIINodePostprocessor(anonymizer)],
        name="e2e-meta",
    )
    for _ in range(2):  # a miss, then an L1 hit
        response = engine.query("When are refunds paid?")
        assert isinstance(response, Response)
        assert response.metadata is not None
        assert [m["title"] for m in response.metadata.values()] == [title]
        assert response.source_nodes[0].node.metadata["title"] == title
    assert "Priya Raman" not in "\n".join(llm.prompts)  # the title went to the LLM pseudonymized
    assert leaks(redis_dump(redis_server_url, redis_prefix)) == []
    step = engine.layers["cache"]
    cached = cache.peek(
        step.key(QueryBundle("When are refunds paid?"), cache.generation("e2e-meta"))
    )
    assert isinstance(cached, Response)
    assert "Priya Raman" not in json.dumps(cached.metadata)
