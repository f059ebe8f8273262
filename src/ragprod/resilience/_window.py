"""Sliding windows of call outcomes: the last N calls, or the last T seconds."""

from __future__ import annotations

from collections import deque

__all__ = ["FAILURE", "SLOW", "CountWindow", "TimeWindow", "Window"]

#: Outcome codes: bit 0 is "failed", bit 1 is "slow". 0 is a fast success.
FAILURE = 1
SLOW = 2


class CountWindow:
    """The outcomes of the last ``size`` calls, with running totals (O(1) per call)."""

    __slots__ = ("calls", "failures", "pos", "ring", "size", "slow")

    def __init__(self, size: int) -> None:
        self.size = size
        self.ring: list[int] = [-1] * size
        self.pos = 0
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def add(self, code: int, now: float) -> None:
        """Record one outcome, evicting the oldest when full."""
        ring = self.ring
        pos = self.pos
        old = ring[pos]
        ring[pos] = code
        self.pos = pos + 1 if pos + 1 < self.size else 0
        if old < 0:
            self.calls += 1
        else:
            self.failures -= old & FAILURE
            self.slow -= old >> 1
        self.failures += code & FAILURE
        self.slow += code >> 1

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` over the window."""
        return self.calls, self.failures, self.slow

    def reset(self) -> None:
        """Forget every outcome."""
        self.__init__(self.size)  # type: ignore[misc]


class TimeWindow:
    """The outcomes of the last ``duration`` seconds, in ``buckets`` partial buckets."""

    __slots__ = ("buckets", "calls", "duration", "failures", "n", "slow", "width")

    def __init__(self, duration: float, buckets: int = 10) -> None:
        self.duration = duration
        self.n = buckets
        self.width = duration / buckets
        self.buckets: deque[list[int]] = deque()  # [epoch, calls, failures, slow]
        self.calls = 0
        self.failures = 0
        self.slow = 0

    def _evict(self, epoch: int) -> None:
        buckets = self.buckets
        while buckets and buckets[0][0] <= epoch - self.n:
            _, c, f, s = buckets.popleft()
            self.calls -= c
            self.failures -= f
            self.slow -= s

    def add(self, code: int, now: float) -> None:
        """Record one outcome at time ``now``."""
        epoch = int(now // self.width)
        self._evict(epoch)
        buckets = self.buckets
        if not buckets or buckets[-1][0] != epoch:
            buckets.append([epoch, 0, 0, 0])
        bucket = buckets[-1]
        bucket[1] += 1
        bucket[2] += code & FAILURE
        bucket[3] += code >> 1
        self.calls += 1
        self.failures += code & FAILURE
        self.slow += code >> 1

    def totals(self, now: float) -> tuple[int, int, int]:
        """``(calls, failures, slow)`` over the last ``duration`` seconds."""
        self._evict(int(now // self.width))
        return self.calls, self.failures, self.slow

    def reset(self) -> None:
        """Forget every outcome."""
        self.buckets.clear()
        self.calls = self.failures = self.slow = 0


Window = CountWindow | TimeWindow
