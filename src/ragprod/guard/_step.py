"""The guard's hook for ``ragprod.harden``."""

from __future__ import annotations

from llama_index.core.base.base_query_engine import BaseQueryEngine

from ragprod.guard._guard import QueryGuard
from ragprod.metrics import RagMetrics

__all__ = ["make_step"]


def make_step(
    config: QueryGuard | bool, *, engine: BaseQueryEngine, metrics: RagMetrics, name: str
) -> QueryGuard:
    """The guard step for ``harden(guard=...)``: ``True`` means ``QueryGuard()``."""
    if config is True:
        return QueryGuard(metrics=metrics)
    if not isinstance(config, QueryGuard):
        raise TypeError(f"guard= takes a QueryGuard or True, got {type(config).__name__}")
    config.bind_metrics(metrics)
    return config
