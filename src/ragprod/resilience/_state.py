"""Breaker states, and the fast rejection error."""

from __future__ import annotations

import enum

from ragprod.errors import CircuitOpenError

__all__ = [
    "CLOSED",
    "DISABLED",
    "FORCED_OPEN",
    "HALF_OPEN",
    "OPEN",
    "SYNCED",
    "BreakerState",
    "open_error",
]


class BreakerState(str, enum.Enum):
    """The states of a :class:`CircuitBreaker` (values are metric label values)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
    DISABLED = "disabled"
    FORCED_OPEN = "forced_open"


CLOSED = BreakerState.CLOSED
OPEN = BreakerState.OPEN
HALF_OPEN = BreakerState.HALF_OPEN
DISABLED = BreakerState.DISABLED
FORCED_OPEN = BreakerState.FORCED_OPEN
# states left only by a transition made elsewhere: re-read once per sync interval
SYNCED = frozenset({CLOSED, DISABLED, FORCED_OPEN})


def open_error(name: str, retry_after: float | None) -> CircuitOpenError:
    """``CircuitOpenError(name, retry_after=...)``, built without its ``__init__`` chain.

    Raising on the rejection path must cost well under a microsecond; the three
    ``__init__`` levels cost twice that. The result is indistinguishable (a test
    compares both).
    """
    exc = CircuitOpenError.__new__(CircuitOpenError)
    exc.name = name
    exc.retry_after = retry_after
    if retry_after is None:
        exc.args = (f"circuit open: {name}",)
    else:
        exc.args = (f"circuit open: {name}; retry after {retry_after:.3f}s",)
    return exc
