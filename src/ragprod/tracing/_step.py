"""The tracing layer's hook for ``ragprod.harden``."""

from __future__ import annotations

from llama_index.core.base.base_query_engine import BaseQueryEngine

from ragprod.metrics import RagMetrics
from ragprod.tracing._config import Tracing
from ragprod.tracing._query import TracingStep

__all__ = ["make_step"]


def make_step(
    config: Tracing | bool, *, engine: BaseQueryEngine, metrics: RagMetrics, name: str
) -> TracingStep:
    """The tracing step for ``harden(tracing=...)``: ``True`` means ``Tracing()``.

    Raises:
        TypeError: ``config`` is neither ``True`` nor a :class:`Tracing`.
    """
    if config is True:
        config = Tracing()
    if not isinstance(config, Tracing):
        raise TypeError(f"tracing= takes a Tracing or True, got {type(config).__name__}")
    return TracingStep(config, metrics=metrics, name=name)
