"""Resilience composed around engines, LLMs, embeddings and functions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.base.llms.types import ChatMessage, CompletionResponse
from llama_index.core.base.response.schema import (
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)

import ragprod
from ragprod.errors import (
    BulkheadFullError,
    CircuitOpenError,
    RateLimitedError,
    UpstreamTimeoutError,
)
from ragprod.metrics import RagMetrics
from ragprod.resilience import (
    BreakerState,
    Bulkhead,
    CircuitBreaker,
    LastGoodAnswer,
    RateLimiter,
    Resilience,
    ResilienceStep,
    ResilientEmbedding,
    ResilientLLM,
    ResilientQueryEngine,
    RetryPolicy,
    Timeout,
    resilient,
)
from ragprod.resilience._step import make_step
from ragprod.testing import (
    ExtractiveLLM,
    FakeClock,
    FaultyQueryEngine,
    HashEmbedding,
    capture_spans,
    test_mode,
)

pytestmark = pytest.mark.usefixtures("no_wait")


def breaker(clock: FakeClock, **kw: Any) -> CircuitBreaker:
    kw.setdefault("minimum_calls", 2)
    kw.setdefault("window_size", 4)
    kw.setdefault("half_open_calls", 1)
    return CircuitBreaker("engine", clock=clock, **kw)


def test_engine_retries_and_answers(run_query: Any) -> None:
    """Transient failures are retried inside the engine; the caller sees the answer."""
    inner = FaultyQueryEngine(failures=[ConnectionError(), TimeoutError()])
    engine = ResilientQueryEngine(inner, Resilience(timeout=None))
    assert str(run_query(engine, "q")) == "ok"
    assert inner.calls == 3


def test_outage_opens_breaker_fails_fast_then_recovers(run_query: Any, clock: FakeClock) -> None:
    """An outage opens the breaker, later queries are refused without calling the engine,
    and after open_duration a good trial closes it again."""
    inner = FaultyQueryEngine(failures=[ConnectionError()] * 6)
    engine = ResilientQueryEngine(
        inner, Resilience(breaker=breaker(clock), retry=RetryPolicy(attempts=1), timeout=None)
    )
    for _ in range(2):
        with pytest.raises(ConnectionError):
            run_query(engine, "q")
    with pytest.raises(CircuitOpenError):
        run_query(engine, "q")
    assert inner.calls == 2
    clock.advance(30.0)
    inner._failures.clear()
    assert str(run_query(engine, "q")) == "ok"
    assert engine.resilience.breaker.state is BreakerState.CLOSED  # type: ignore[union-attr]


def test_fallback_answers_refused_queries(run_query: Any, clock: FakeClock) -> None:
    """With a fallback, an open breaker answers with it as a Response marked as fallback."""
    metrics = RagMetrics()
    r = Resilience(
        breaker=breaker(clock),
        retry=False,
        timeout=None,
        fallback="The service is degraded, please try again.",
        metrics=metrics,
        name="engine",
    )
    engine = ResilientQueryEngine(FaultyQueryEngine(fail_always=ConnectionError()), r)
    answers = [run_query(engine, "q") for _ in range(3)]
    assert all(isinstance(a, Response) for a in answers)
    assert answers[-1].metadata == {"ragprod_fallback": True}
    assert str(answers[-1]) == "The service is degraded, please try again."
    assert metrics.value("ragprod_resilience_fallbacks_total", upstream="engine") == 3.0


def test_fallback_does_not_hide_client_errors(run_query: Any) -> None:
    """A bug or a 4xx-like error still raises, fallback or not."""
    r = Resilience(retry=False, timeout=None, fallback="degraded")
    engine = ResilientQueryEngine(FaultyQueryEngine(fail_always=ValueError("bad request")), r)
    with pytest.raises(ValueError, match="bad request"):
        run_query(engine, "q")


def test_fallback_function_gets_the_exception() -> None:
    """A callable fallback is called with the error and may return a Response."""
    seen: list[BaseException] = []

    def fallback(exc: BaseException) -> Response:
        seen.append(exc)
        return Response(response="cached answer")

    r = Resilience(retry=False, timeout=None, fallback=fallback)
    engine = ResilientQueryEngine(FaultyQueryEngine(fail_always=ConnectionError()), r)
    assert str(engine.query("q")) == "cached answer"
    assert isinstance(seen[0], ConnectionError)


def test_order_rate_limit_before_bulkhead_before_breaker(clock: FakeClock) -> None:
    """The rate limiter refuses first, then the bulkhead, and neither counts as a breaker call."""
    limiter = RateLimiter(rate=1.0, burst=1, clock=clock)
    bulkhead = Bulkhead(1)
    b = breaker(clock)
    r = Resilience(breaker=b, retry=False, timeout=None, bulkhead=bulkhead, rate_limiter=limiter)
    assert r.call(lambda: 1) == 1
    with pytest.raises(RateLimitedError):
        r.call(lambda: 1)
    clock.advance(1.0)
    bulkhead.acquire()
    with pytest.raises(BulkheadFullError):
        r.call(lambda: 1)
    bulkhead.release()
    assert b.metrics_snapshot()["calls"] == 1


def test_breaker_sees_one_outcome_per_retried_call(clock: FakeClock) -> None:
    """Retries happen inside the breaker: a call that succeeds on retry is one success."""
    b = breaker(clock)
    r = Resilience(breaker=b, retry=RetryPolicy(attempts=3), timeout=None)
    script = iter([ConnectionError(), ConnectionError(), None])

    def flaky() -> str:
        exc = next(script)
        if exc:
            raise exc
        return "ok"

    assert r.call(flaky) == "ok"
    assert b.metrics_snapshot() == {"calls": 1, "failures": 0, "slow": 0}


def test_each_attempt_runs_under_the_timeout() -> None:
    """A hung attempt times out and is retried; the caller gets the next attempt's answer."""
    calls = 0

    async def sometimes_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(3600)
        return "ok"

    r = Resilience(timeout=Timeout(0.01), retry=RetryPolicy(attempts=2))
    assert asyncio.run(r.acall(sometimes_hangs)) == "ok"
    assert calls == 2


def test_timeout_exhausted_raises_upstream_timeout() -> None:
    """When every attempt hangs, the caller gets UpstreamTimeoutError."""

    async def hang() -> None:
        await asyncio.sleep(3600)

    r = Resilience(timeout=0.01, retry=RetryPolicy(attempts=2))
    with pytest.raises(UpstreamTimeoutError):
        asyncio.run(r.acall(hang))


def test_streaming_passes_through_sync_and_async() -> None:
    """Streaming responses keep streaming through the resilience step."""
    engine = ResilientQueryEngine(FaultyQueryEngine(answer="a b c", streaming=True))
    response = engine.query("q")
    assert isinstance(response, StreamingResponse)
    assert "".join(response.response_gen) == "a b c"

    async def main() -> str:
        aresponse = await engine.aquery("q")
        assert isinstance(aresponse, AsyncStreamingResponse)
        return "".join([piece async for piece in aresponse.response_gen])

    assert asyncio.run(main()) == "a b c"


def test_stream_failing_midway_counts_as_breaker_failure(clock: FakeClock) -> None:
    """A stream that breaks after the call returned is reported to the breaker as a failure."""
    b = breaker(clock)

    def broken() -> Any:
        yield "a "
        raise ConnectionError("reset mid-stream")

    r = Resilience(breaker=b, retry=False, timeout=None)
    response = ResilienceStep(r).handle(
        None,  # type: ignore[arg-type]
        lambda q: StreamingResponse(response_gen=broken()),
    )
    with pytest.raises(ConnectionError):
        list(response.response_gen)  # type: ignore[union-attr]
    assert b.metrics_snapshot() == {"calls": 2, "failures": 1, "slow": 0}


def test_make_step_and_harden(run_query: Any) -> None:
    """harden(resilience=True|Resilience) puts the step in the chain on the shared metrics."""
    metrics = RagMetrics()
    step = make_step(True, engine=FaultyQueryEngine(), metrics=metrics, name="docs")
    assert step.resilience.name == "docs"
    assert step.resilience.breaker.signals.metrics is metrics  # type: ignore[union-attr]
    with pytest.raises(TypeError):
        make_step("yes", engine=FaultyQueryEngine(), metrics=metrics, name="x")  # type: ignore[arg-type]
    inner = FaultyQueryEngine(failures=[ConnectionError()])
    engine = ragprod.harden(inner, tracing=False, resilience=Resilience(timeout=None))
    assert str(run_query(engine, "q")) == "ok"
    assert "resilience" in repr(engine)


def test_resilient_llm_complete_chat_and_async() -> None:
    """ResilientLLM delegates complete/chat (sync and async) and metadata to the inner LLM."""
    llm = ResilientLLM(ExtractiveLLM())
    prompt = "Context:\n-----\nRefunds take 5 days.\n-----\nQuery: refunds?\nAnswer:"
    assert "5 days" in llm.complete(prompt).text
    assert "5 days" in asyncio.run(llm.acomplete(prompt)).text
    chat = llm.chat([ChatMessage(role="user", content=prompt)])
    assert "5 days" in str(chat.message.content)
    assert llm.metadata == ExtractiveLLM().metadata


def test_resilient_llm_streams() -> None:
    """stream_complete and astream_complete yield the inner LLM's chunks."""
    llm = ResilientLLM(ExtractiveLLM())
    prompt = "Context:\n-----\nRefunds take 5 days.\n-----\nQuery: refunds?\nAnswer:"
    chunks = list(llm.stream_complete(prompt))
    assert "5 days" in chunks[-1].text

    async def main() -> list[CompletionResponse]:
        return [c async for c in await llm.astream_complete(prompt)]

    assert "5 days" in asyncio.run(main())[-1].text


def test_resilient_llm_as_settings_llm_in_a_real_index() -> None:
    """ResilientLLM and ResilientEmbedding work as the LLM and embedding of a real index."""
    embed = ResilientEmbedding(HashEmbedding(dim=64))
    index = VectorStoreIndex.from_documents(
        [Document(text="Refunds are paid within 5 days.")], embed_model=embed
    )
    previous = Settings._llm
    try:
        Settings.llm = ResilientLLM(ExtractiveLLM())
        answer = index.as_query_engine(embed_model=embed).query("When are refunds paid?")
    finally:
        Settings._llm = previous
    assert "5 days" in str(answer)


class FlakyLLM(ExtractiveLLM):
    """An ExtractiveLLM whose first ``failures`` completions fail, and streams that break."""

    failures: int = 0
    break_stream: bool = False

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("provider down")
        return super().complete(prompt, formatted=formatted, **kwargs)

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        def gen() -> Any:
            yield CompletionResponse(text="partial", delta="partial")
            if self.break_stream:
                raise ConnectionError("stream reset")

        return gen()


def test_resilient_llm_retries_and_falls_back(clock: FakeClock) -> None:
    """LLM failures are retried; an open breaker's fallback text is a CompletionResponse."""
    llm = ResilientLLM(FlakyLLM(failures=1), Resilience(timeout=None))
    assert llm.complete("Query: x\nAnswer:").text is not None
    down = ResilientLLM(
        FlakyLLM(failures=100),
        Resilience(breaker=breaker(clock), retry=False, timeout=None, fallback="degraded"),
    )
    responses = [down.complete("q") for _ in range(3)]
    assert [r.text for r in responses] == ["degraded"] * 3
    assert responses[0].additional_kwargs == {"ragprod_fallback": True}
    assert next(iter(down.stream_complete("q"))).text == "degraded"


def test_resilient_llm_stream_failing_midway_is_a_failure(clock: FakeClock) -> None:
    """An LLM stream that breaks after its first chunk raises and counts as a breaker failure."""
    b = breaker(clock)
    llm = ResilientLLM(
        FlakyLLM(break_stream=True), Resilience(breaker=b, retry=False, timeout=None)
    )
    gen = llm.stream_complete("q")
    assert next(gen).text == "partial"
    with pytest.raises(ConnectionError):
        next(gen)
    assert b.metrics_snapshot()["failures"] == 1


def test_resilient_embedding_delegates_sync_async_and_batches() -> None:
    """ResilientEmbedding returns the inner model's vectors for queries, texts and batches."""
    inner = HashEmbedding(dim=16)
    embed = ResilientEmbedding(inner)
    assert embed.get_query_embedding("a") == inner.get_query_embedding("a")
    assert asyncio.run(embed.aget_query_embedding("a")) == inner.get_query_embedding("a")
    assert embed.get_text_embedding_batch(["a", "b"]) == inner.get_text_embedding_batch(["a", "b"])
    assert asyncio.run(embed.aget_text_embedding_batch(["a"])) == [inner.get_text_embedding("a")]
    assert embed.inner is inner
    assert "inner" not in embed.to_dict()


def test_resilient_decorator_forms() -> None:
    """@resilient works bare, with keyword arguments and with a policy, on sync and async."""
    calls = 0

    @resilient
    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError
        return "ok"

    @resilient(timeout=None, fallback=lambda exc: "fallback")
    async def down() -> str:
        raise ConnectionError

    policy = Resilience(timeout=None)

    @resilient(policy)
    async def double(x: int) -> int:
        return 2 * x

    assert flaky() == "ok"
    assert asyncio.run(down()) == "fallback"
    assert asyncio.run(double(4)) == 8
    assert double.resilience is policy  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        resilient("not a policy")  # type: ignore[call-overload]


def test_decisions_become_span_events(clock: FakeClock) -> None:
    """Retries, transitions and rejections are added as events on the current span."""
    r = Resilience(breaker=breaker(clock), retry=RetryPolicy(attempts=2), timeout=None)
    with capture_spans() as captured:
        tracer = captured.provider.get_tracer("test")
        with tracer.start_as_current_span("request"):
            for _ in range(3):
                with pytest.raises((ConnectionError, CircuitOpenError)):
                    r.call(FaultyQueryEngine(fail_always=ConnectionError()).query, "q")
    names = [e.name for e in captured.named("request")[0].events]
    assert "ragprod.resilience.retry" in names
    assert "ragprod.resilience.breaker_transition" in names
    assert "ragprod.resilience.rejected" in names


def test_test_mode_is_exported() -> None:
    """ragprod.testing.test_mode is the switch users reach for in their own tests."""
    with test_mode(attempts=1):
        r = Resilience(timeout=None)
        with pytest.raises(ConnectionError):
            r.call(FaultyQueryEngine(failures=[ConnectionError()]).query, "q")


def test_attempt_timeouts_are_cut_to_the_remaining_deadline() -> None:
    """With a retry deadline, each attempt's timeout is at most what is left of the deadline."""
    clock = FakeClock()
    seen: list[float] = []

    class Recording(Timeout):
        def call_within(self, seconds: float, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            seen.append(seconds)
            clock.advance(4.0)  # each attempt takes 4 s and fails
            raise ConnectionError

    retry = RetryPolicy(attempts=5, initial=0.0, deadline=10.0, clock=clock, sleep=clock.sleep)
    r = Resilience(timeout=Recording(6.0, sync="check"), retry=retry, breaker=False)
    with pytest.raises(ConnectionError):
        r.call(lambda: None)
    assert seen == [6.0, 6.0, 2.0]


def test_last_good_answer_serves_the_previous_response(run_query: Any, clock: FakeClock) -> None:
    """A failed query gets its last successful answer, marked stale; else the default."""
    memo = LastGoodAnswer(default="degraded", max_age=60.0, clock=clock)
    inner = FaultyQueryEngine(answer=lambda q: f"answer to {q}", failures={2: ConnectionError()})
    engine = ResilientQueryEngine(inner, Resilience(retry=False, timeout=None, fallback=memo))
    first = run_query(engine, "refunds?")
    clock.advance(5.0)
    again = run_query(engine, "refunds?")  # call 2 fails: served from memory
    assert str(again) == str(first) == "answer to refunds?"
    assert again.metadata["ragprod_fallback"] is True
    assert again.metadata["ragprod_stale_seconds"] == 5.0
    inner.fail_always = ConnectionError()
    assert str(run_query(engine, "never seen")) == "degraded"
    clock.advance(100.0)
    assert str(run_query(engine, "refunds?")) == "degraded"  # too old
    assert len(memo) == 1


def test_last_good_answer_without_default_reraises() -> None:
    """With default=None and nothing remembered, the original error propagates."""
    memo = LastGoodAnswer(default=None)
    engine = ResilientQueryEngine(
        FaultyQueryEngine(fail_always=ConnectionError("down")),
        Resilience(retry=False, timeout=None, fallback=memo),
    )
    with pytest.raises(ConnectionError, match="down"):
        engine.query("q")


class DownLLM(ExtractiveLLM):
    """An ExtractiveLLM whose every call fails as if the provider were unreachable."""

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise ConnectionError("provider down")

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise ConnectionError("provider down")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise ConnectionError("provider down")

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        raise ConnectionError("provider down")


def test_resilient_llm_async_chat_and_streams_fall_back() -> None:
    """achat, astream_complete and stream_chat answer with the fallback when the LLM is down."""
    llm = ResilientLLM(DownLLM(), Resilience(retry=False, timeout=None, fallback="degraded"))
    message = [ChatMessage(role="user", content="q")]

    async def main() -> tuple[Any, list[Any]]:
        chat = await llm.achat(message)
        chunks = [c async for c in await llm.astream_complete("q")]
        return chat, chunks

    chat, chunks = asyncio.run(main())
    assert chat.message.content == "degraded"
    assert chat.additional_kwargs == {"ragprod_fallback": True}
    assert [c.text for c in chunks] == ["degraded"]
    assert [c.message.content for c in llm.stream_chat(message)] == ["degraded"]


def test_resilient_llm_without_fallback_raises_the_provider_error() -> None:
    """Without a fallback the provider's own error reaches the caller after the retries."""
    llm = ResilientLLM(DownLLM(), Resilience(retry=RetryPolicy(attempts=2), timeout=None))
    with pytest.raises(ConnectionError, match="provider down"):
        llm.complete("q")
