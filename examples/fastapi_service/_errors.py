"""Map every failure of a query to a clean HTTP answer: a status, a reason code, no traceback.

- ``QueryRejectedError``: 400, ``query_rejected`` / the guard's reason code
- ``RateLimitedError``: 429 + ``Retry-After``, ``rate_limited``
- ``CircuitOpenError``, ``BulkheadFullError``, ``UpstreamTimeoutError``, any
  other ``UpstreamUnavailableError``: 503 + ``Retry-After``,
  ``upstream_unavailable`` / ``circuit_open``, ``bulkhead_full``,
  ``upstream_timeout``, ``upstream_unavailable``
- the service's own request deadline passed: 503 + ``Retry-After``,
  ``upstream_unavailable`` / ``deadline_exceeded``
- ``ConnectionError`` / ``OSError`` from the upstream (retries exhausted, no
  breaker yet): 503 + ``Retry-After``, ``upstream_unavailable`` / ``upstream_error``
- anything else: 500, ``internal_error`` (logged with its class name only)

Bodies carry reason codes and the trace id, never the query or an exception text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ragprod.errors import (
    BulkheadFullError,
    CircuitOpenError,
    QueryRejectedError,
    RateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

__all__ = ["DeadlineExceeded", "Failure", "classify"]

_DEFAULT_RETRY_AFTER = 1.0


class DeadlineExceeded(Exception):
    """The service's own per-request deadline passed."""


@dataclass(frozen=True, slots=True)
class Failure:
    """The HTTP form of a failed query."""

    status: int
    error: str
    reason: str
    retry_after: float | None = None
    handled: bool = True

    def body(self, trace_id: str | None = None) -> dict[str, Any]:
        """The JSON body (also the payload of an SSE ``error`` event)."""
        out: dict[str, Any] = {"error": self.error, "reason": self.reason}
        if self.retry_after is not None:
            out["retry_after"] = round(self.retry_after, 3)
        if trace_id:
            out["trace_id"] = trace_id
        return out

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (at least 1) when the client may retry."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


def _after(exc: BaseException) -> float:
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return _DEFAULT_RETRY_AFTER


def classify(exc: BaseException) -> Failure:
    """The :class:`Failure` for ``exc`` (see the module docstring for the table).

    Example:
        >>> classify(QueryRejectedError("too_long", length=9000, limit=4000)).status
        400
        >>> classify(ConnectionError("boom")).reason
        'upstream_error'
    """
    if isinstance(exc, QueryRejectedError):
        return Failure(400, "query_rejected", str(getattr(exc, "reason", "rejected")))
    if isinstance(exc, RateLimitedError):
        return Failure(429, "rate_limited", "rate_limited", _after(exc))
    if isinstance(exc, UpstreamUnavailableError):
        if isinstance(exc, CircuitOpenError):
            reason = "circuit_open"
        elif isinstance(exc, BulkheadFullError):
            reason = "bulkhead_full"
        elif isinstance(exc, UpstreamTimeoutError):
            reason = "upstream_timeout"
        else:
            reason = "upstream_unavailable"
        return Failure(503, "upstream_unavailable", reason, _after(exc))
    if isinstance(exc, DeadlineExceeded):
        return Failure(503, "upstream_unavailable", "deadline_exceeded", _DEFAULT_RETRY_AFTER)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)):
        return Failure(503, "upstream_unavailable", "upstream_error", _DEFAULT_RETRY_AFTER)
    return Failure(500, "internal_error", "internal_error", None, handled=False)
