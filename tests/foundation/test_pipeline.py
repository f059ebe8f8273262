"""The step chain: order, short-circuits, forwarding, one shell per request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.response.schema import RESPONSE_TYPE, Response
from llama_index.core.schema import QueryBundle

from ragprod._pipeline import AsyncNext, QueryStep, StepQueryEngine, SyncNext
from ragprod.testing import ExtractiveLLM, FaultyQueryEngine, HashEmbedding


class Recorder:
    """A step that records the order it runs in and tags the query."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def handle(self, query: QueryBundle, call_next: SyncNext) -> RESPONSE_TYPE:
        self.log.append(f"in:{self.name}")
        response = call_next(QueryBundle(query.query_str + f"+{self.name}"))
        self.log.append(f"out:{self.name}")
        return response

    async def ahandle(self, query: QueryBundle, call_next: AsyncNext) -> RESPONSE_TYPE:
        self.log.append(f"in:{self.name}")
        response = await call_next(QueryBundle(query.query_str + f"+{self.name}"))
        self.log.append(f"out:{self.name}")
        return response


class ShortCircuit:
    """A step that answers without calling the rest of the chain."""

    name = "short"

    def handle(self, query: QueryBundle, call_next: SyncNext) -> RESPONSE_TYPE:
        return Response(response="from step")

    async def ahandle(self, query: QueryBundle, call_next: AsyncNext) -> RESPONSE_TYPE:
        return Response(response="from step")


def test_steps_run_outermost_first(run_query: Any) -> None:
    """Requests pass down the steps in order and responses come back up."""
    log: list[str] = []
    inner = FaultyQueryEngine(answer=lambda q: q)
    engine = StepQueryEngine(inner, [Recorder("a", log), Recorder("b", log)])
    assert str(run_query(engine, "q")) == "q+a+b"
    assert log == ["in:a", "in:b", "out:b", "out:a"]


def test_a_step_can_short_circuit(run_query: Any) -> None:
    """A step that answers itself never reaches the engine."""
    inner = FaultyQueryEngine()
    engine = StepQueryEngine(inner, [ShortCircuit()])
    assert str(run_query(engine, "q")) == "from step"
    assert inner.calls == 0


def test_errors_propagate_through_steps(run_query: Any) -> None:
    """An engine failure reaches the caller unchanged."""
    log: list[str] = []
    engine = StepQueryEngine(FaultyQueryEngine(fail_always=KeyError("x")), [Recorder("a", log)])
    with pytest.raises(KeyError):
        run_query(engine, "q")
    assert log == ["in:a"]


def test_steps_satisfy_the_protocol() -> None:
    """Step objects are recognised as QuerySteps at run time."""
    assert isinstance(ShortCircuit(), QueryStep)


def test_shell_rejects_non_engines() -> None:
    """Wrapping something that is not a query engine is a TypeError naming the type."""
    with pytest.raises(TypeError, match="BaseQueryEngine, got str"):
        StepQueryEngine("engine")  # type: ignore[arg-type]


def test_shell_forwards_retrieve_prompts_and_attributes() -> None:
    """retrieve, prompts and engine attributes reach the wrapped engine."""
    index = VectorStoreIndex.from_documents(
        [Document(text="alpha beta"), Document(text="gamma delta")], embed_model=HashEmbedding()
    )
    inner = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=1)
    engine = StepQueryEngine(inner)
    nodes = engine.retrieve(QueryBundle("gamma"))
    assert nodes[0].node.get_content() == "gamma delta"
    assert set(engine.get_prompts()) == {f"engine:{k}" for k in inner.get_prompts()}
    assert engine.retriever is inner.retriever
    assert engine.engine is inner
    assert repr(engine) == "<StepQueryEngine (no layers) -> RetrieverQueryEngine>"


def test_shell_is_safe_for_concurrent_async_queries() -> None:
    """Many concurrent aquery calls each get their own answer."""
    engine = StepQueryEngine(FaultyQueryEngine(answer=lambda q: q.upper(), latency=0.01), [])

    async def main() -> list[str]:
        results = await asyncio.gather(*(engine.aquery(f"q{i}") for i in range(50)))
        return [str(r) for r in results]

    assert asyncio.run(main()) == [f"Q{i}" for i in range(50)]
