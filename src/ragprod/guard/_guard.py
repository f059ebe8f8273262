"""Input validation for queries, before they cost anything."""

from __future__ import annotations

import re
from typing import Any

import structlog
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.schema import QueryBundle

from ragprod._pipeline import AsyncNext, StepQueryEngine, SyncNext
from ragprod.errors import QueryRejectedError
from ragprod.metrics import RagMetrics

__all__ = ["REASONS", "QueryGuard"]

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")

#: Every reason code a :class:`QueryGuard` can reject with.
REASONS = ("not_a_string", "empty", "too_long", "control_characters", "invalid_unicode")

_log = structlog.get_logger("ragprod.guard")


class QueryGuard:
    """Reject malformed queries with a typed, content-free error.

    Checks, in order: the query is a string (or a ``QueryBundle`` holding
    one), it is not blank, it has at most ``max_chars`` characters, it holds no
    control characters (tab, newline and carriage return are allowed), and no
    lone surrogates (text that cannot be encoded as UTF-8). A rejection raises
    :class:`~ragprod.errors.QueryRejectedError` with ``reason`` set to one of
    :data:`REASONS`, counts ``ragprod_guard_rejections_total{reason}`` and logs
    ``ragprod.guard.rejected`` with the reason and length, never the text.

    Args:
        max_chars: the longest accepted query, in characters.
        allow_control: accept control characters (for engines that want raw
            input).
        metrics: where to count rejections (a private registry by default).

    Use it alone with :meth:`wrap`, or pass it to ``ragprod.harden(guard=...)``.

    Example:
        >>> from ragprod.guard import QueryGuard
        >>> QueryGuard(max_chars=10).check("  refunds ")
        '  refunds '
        >>> QueryGuard(max_chars=10).check("x" * 11)
        Traceback (most recent call last):
        ...
        ragprod.errors.QueryRejectedError: query rejected: too_long (length=11, limit=10)
    """

    name = "guard"

    def __init__(
        self,
        max_chars: int = 4000,
        *,
        allow_control: bool = False,
        metrics: RagMetrics | None = None,
    ) -> None:
        if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars < 1:
            raise ValueError("max_chars must be a positive integer")
        self.max_chars = max_chars
        self.allow_control = allow_control
        self.bind_metrics(metrics or RagMetrics())

    def bind_metrics(self, metrics: RagMetrics) -> None:
        """Count rejections on ``metrics`` from now on."""
        self.metrics = metrics
        self._rejections = metrics.counter(
            "ragprod_guard_rejections_total", "Queries rejected by the guard.", ("reason",)
        )

    def check(self, query: Any) -> str:
        """Return the query text if it is acceptable, else raise ``QueryRejectedError``."""
        text = query.query_str if isinstance(query, QueryBundle) else query
        if not isinstance(text, str):
            self._reject("not_a_string", None)
        if len(text) > self.max_chars:
            self._reject("too_long", len(text), self.max_chars)
        if not text.strip():
            self._reject("empty", len(text))
        if not self.allow_control and _CONTROL.search(text):
            self._reject("control_characters", len(text))
        if _SURROGATE.search(text):
            self._reject("invalid_unicode", len(text))
        return text

    def _reject(self, reason: str, length: int | None, limit: int | None = None) -> None:
        self._rejections.labels(reason=reason).inc()
        _log.info("ragprod.guard.rejected", reason=reason, length=length)
        raise QueryRejectedError(reason, length=length, limit=limit)

    def check_input(self, query: object) -> None:
        """Shell hook: reject a non-string query before LlamaIndex sees it."""
        self.check(query)

    # QueryStep protocol: the guard is its own step.
    def handle(self, query: QueryBundle, call_next: SyncNext) -> RESPONSE_TYPE:
        """Check the query, then pass it on."""
        self.check(query)
        return call_next(query)

    async def ahandle(self, query: QueryBundle, call_next: AsyncNext) -> RESPONSE_TYPE:
        """Check the query, then pass it on."""
        self.check(query)
        return await call_next(query)

    def wrap(self, engine: BaseQueryEngine) -> StepQueryEngine:
        """A query engine that runs this guard in front of ``engine``."""
        return StepQueryEngine(engine, [self])

    def __repr__(self) -> str:
        return f"QueryGuard(max_chars={self.max_chars}, allow_control={self.allow_control})"
