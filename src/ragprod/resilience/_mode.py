"""Process-wide test mode for the resilience layer (see ``ragprod.testing.test_mode``)."""

from __future__ import annotations

__all__ = ["TEST_MODE"]


class _TestMode:
    """When ``active``, retries do not wait and ``attempts`` (if set) caps every policy."""

    __slots__ = ("active", "attempts")

    def __init__(self) -> None:
        self.active = False
        self.attempts: int | None = None


TEST_MODE = _TestMode()
