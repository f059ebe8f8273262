"""The resilience layer's hook for ``ragprod.harden``."""

from __future__ import annotations

from llama_index.core.base.base_query_engine import BaseQueryEngine

from ragprod.metrics import RagMetrics
from ragprod.resilience._resilience import Resilience, ResilienceStep

__all__ = ["make_step"]


def make_step(
    config: Resilience | bool, *, engine: BaseQueryEngine, metrics: RagMetrics, name: str
) -> ResilienceStep:
    """The step for ``harden(resilience=...)``: ``True`` means ``Resilience(name=name)``.

    Raises:
        TypeError: ``config`` is neither ``True`` nor a ``Resilience``.
    """
    if config is True:
        return ResilienceStep(Resilience(name=name, metrics=metrics))
    if not isinstance(config, Resilience):
        raise TypeError(f"resilience= takes a Resilience or True, got {type(config).__name__}")
    config.bind_metrics(metrics)
    return ResilienceStep(config)
