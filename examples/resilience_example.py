"""An upstream outage, end to end: the breaker opens, a fallback answers, the service recovers.

Run: ``python examples/resilience_example.py``. Offline. If Redis answers at
``REDIS_URL`` (default ``redis://127.0.0.1:6379/0``) the breaker state is shared
through it, as it would be between the replicas of a service; otherwise the
breaker runs on local state, and says so.
"""

from __future__ import annotations

import os
import uuid

import redis
from llama_index.core import Document, VectorStoreIndex

from ragprod.errors import CircuitOpenError
from ragprod.metrics import RagMetrics
from ragprod.resilience import (
    CircuitBreaker,
    RedisBreakerStore,
    Resilience,
    ResilientQueryEngine,
    RetryPolicy,
)
from ragprod.testing import ExtractiveLLM, FakeClock, HashEmbedding, test_mode


class Upstream:
    """A switch standing in for an LLM provider that goes down and comes back."""

    def __init__(self) -> None:
        self.down = False
        self.calls = 0


def build_engine(upstream: Upstream) -> ExtractiveLLM:
    """An extractive LLM that fails while the upstream is down."""

    class FlakyLLM(ExtractiveLLM):
        def complete(self, prompt: str, formatted: bool = False, **kwargs: object):  # type: ignore[no-untyped-def]
            upstream.calls += 1
            if upstream.down:
                raise ConnectionError("provider unreachable")
            return super().complete(prompt, formatted=formatted, **kwargs)

    return FlakyLLM()


def shared_store(prefix: str, clock: FakeClock) -> RedisBreakerStore | None:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
    try:
        client.ping()
    except redis.RedisError:
        print("Redis unavailable: the breaker runs on local state")
        return None
    print("breaker state shared through Redis")
    # replicas share the store's clock (wall time by default; the example's fake one here)
    return RedisBreakerStore(client, prefix=prefix, clock=clock)


def main() -> None:
    clock = FakeClock()  # so the example does not wait 30 s for the breaker to half-open
    prefix = f"ragprod-example:{uuid.uuid4().hex[:8]}:"
    store = shared_store(prefix, clock)
    metrics = RagMetrics()
    upstream = Upstream()
    index = VectorStoreIndex.from_documents(
        [Document(text="Refunds are paid within five business days.")],
        embed_model=HashEmbedding(),
    )
    inner = index.as_query_engine(llm=build_engine(upstream))
    policy = Resilience(
        breaker=CircuitBreaker(
            "llm",
            minimum_calls=3,
            window_size=10,
            open_duration=30.0,
            half_open_calls=1,
            clock=clock,
            store=store,
        ),
        retry=RetryPolicy(attempts=2),
        timeout=None,
        fallback="The assistant is degraded right now; please try again in a minute.",
        name="llm",
        metrics=metrics,
    )
    engine = ResilientQueryEngine(inner, policy)
    question = "When are refunds paid?"

    with test_mode():  # retries without backoff sleeps, for a quick run
        print("1. healthy:", engine.query(question))

        upstream.down = True
        for i in range(4):
            answer = engine.query(question)
            print(f"2.{i + 1} outage: {answer} (breaker {policy.breaker.state.value})")  # type: ignore[union-attr]
        calls = upstream.calls
        engine.query(question)
        print("3. while open, the provider is not called:", upstream.calls == calls)

        upstream.down = False
        clock.advance(30.0)
        print("4. after 30 s, a trial call:", engine.query(question))
        print("   breaker:", policy.breaker.state.value)  # type: ignore[union-attr]

    try:
        policy.breaker.force_open()  # type: ignore[union-attr]
        policy.breaker.call(print, "never printed")  # type: ignore[union-attr]
    except CircuitOpenError as exc:
        print("5. operators can force it open:", exc)
    finally:
        policy.breaker.reset()  # type: ignore[union-attr]

    transitions = metrics.value(
        "ragprod_resilience_breaker_transitions_total",
        breaker="llm",
        from_state="closed",
        to_state="open",
    )
    fallbacks = metrics.value("ragprod_resilience_fallbacks_total", upstream="llm")
    print(f"metrics: opened {transitions:.0f} time(s), {fallbacks:.0f} fallback answer(s)")
    if store is not None:
        store.client.delete(store.prefix + "llm")


if __name__ == "__main__":
    main()
