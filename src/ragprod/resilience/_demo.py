"""The resilience section of ``ragprod demo``: an outage, a fallback, a recovery.

The demo package registers it as ``Section("resilience", TITLE, outage_section)``.
It only uses the demo context's ``index``, ``llm``, ``say``, ``record`` and
``timed`` (duck-typed, so this module does not import the demo).
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from llama_index.core.llms.llm import LLM
from pydantic import PrivateAttr

from ragprod.metrics import RagMetrics
from ragprod.resilience._breaker import CircuitBreaker
from ragprod.resilience._resilience import Resilience
from ragprod.resilience._retry import RetryPolicy
from ragprod.resilience._wrappers import ResilientQueryEngine
from ragprod.testing import FakeClock

__all__ = ["TITLE", "outage_section"]

TITLE = "An upstream outage: the breaker opens, answers fall back, then it recovers"
FALLBACK = "The assistant is degraded right now; please try again in a minute."
QUESTION = "What happens when the LLM provider is down?"


class _Switch:
    down = False
    calls = 0


class _OutageLLM(CustomLLM):
    """The demo's LLM behind a switch: raises ``ConnectionError`` while the switch is down."""

    _inner: LLM = PrivateAttr()
    _switch: _Switch = PrivateAttr()

    def __init__(self, inner: LLM, switch: _Switch) -> None:
        super().__init__()
        self._inner = inner
        self._switch = switch

    @property
    def metadata(self) -> LLMMetadata:
        return self._inner.metadata

    def _check(self) -> None:
        self._switch.calls += 1
        if self._switch.down:
            raise ConnectionError("provider unreachable")

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        self._check()
        return self._inner.complete(prompt, formatted=formatted, **kwargs)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        self._check()
        return self._inner.stream_complete(prompt, formatted=formatted, **kwargs)


def outage_section(ctx: Any) -> None:
    """Inject an outage under a hardened engine and narrate the breaker's states."""
    assert ctx.index is not None
    clock = FakeClock()
    metrics = RagMetrics()
    switch = _Switch()
    breaker = CircuitBreaker(
        "llm", minimum_calls=3, window_size=10, open_duration=30.0, half_open_calls=1, clock=clock
    )
    policy = Resilience(
        breaker=breaker,
        retry=RetryPolicy(attempts=2, initial=0.0, jitter=False),
        timeout=None,
        fallback=FALLBACK,
        name="llm",
        metrics=metrics,
    )
    inner = ctx.index.as_query_engine(llm=_OutageLLM(ctx.llm, switch), similarity_top_k=2)
    engine = ResilientQueryEngine(inner, policy)

    ctx.say(f"  healthy: {engine.query(QUESTION)}")
    switch.down = True
    timeline = []
    for _ in range(4):
        with ctx.timed() as t:
            answer = engine.query(QUESTION)
        timeline.append((breaker.state.value, round(t["ms"], 2)))
        ctx.say(f"  outage, breaker {breaker.state.value:<9} {t['ms']:6.1f} ms: {answer}")
    calls = switch.calls
    engine.query(QUESTION)
    ctx.say(f"  while open: {switch.calls - calls} provider calls, the fallback answers at once")
    switch.down = False
    clock.advance(30.0)
    ctx.say(f"  30 s later, one trial call succeeds: {engine.query(QUESTION)}")
    ctx.say(f"  breaker: {breaker.state.value}")
    opened = metrics.value(
        "ragprod_resilience_breaker_transitions_total",
        breaker="llm",
        from_state="closed",
        to_state="open",
    )
    fallbacks = metrics.value("ragprod_resilience_fallbacks_total", upstream="llm")
    ctx.record("timeline", timeline)
    ctx.record("opened", opened)
    ctx.record("fallbacks", fallbacks)
    ctx.record("final_state", breaker.state.value)
