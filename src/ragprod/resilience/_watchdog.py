"""One timer per event loop for many async deadlines of the same length."""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections import deque

__all__ = ["Deadline", "Watchdog", "watchdog_for"]


class Deadline:
    """One protected await: its deadline, its task, and whether it finished or expired."""

    __slots__ = ("cancelling", "deadline", "done", "expired", "task")

    def __init__(self, deadline: float, task: asyncio.Task[object], cancelling: int) -> None:
        self.deadline = deadline
        self.task = task
        self.cancelling = cancelling
        self.done = False
        self.expired = False


class Watchdog:
    """Cancels the tasks of overdue :class:`Deadline` entries of one event loop.

    ``asyncio.timeout`` schedules (and cancels) a timer per call, a few
    microseconds each. With a fixed timeout, deadlines arrive in order, so a
    FIFO and one timer for its head suffice: registering is an append,
    finishing sets a flag, and the timer fires about once per timeout length.
    The cancellation itself is the same as ``asyncio.timeout``'s:
    ``task.cancel()``, then ``uncancel()`` when the scope exits.
    """

    __slots__ = ("__weakref__", "entries", "loop", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.entries: deque[Deadline] = deque()
        self.timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task[object], seconds: float) -> Deadline:
        """Register ``task`` to be cancelled ``seconds`` from now (call from the loop)."""
        entries = self.entries
        while entries and entries[0].done:
            entries.popleft()
        cancelling = 0
        if sys.version_info >= (3, 11):
            cancelling = task.cancelling()
        entry = Deadline(self.loop.time() + seconds, task, cancelling)
        entries.append(entry)
        if self.timer is None:
            self.timer = self.loop.call_at(entry.deadline, self._fire)
        return entry

    def _fire(self) -> None:
        self.timer = None
        now = self.loop.time()
        entries = self.entries
        while entries:
            head = entries[0]
            if head.done:
                entries.popleft()
            elif head.deadline <= now:
                entries.popleft()
                head.expired = True
                head.task.cancel()
            else:
                self.timer = self.loop.call_at(head.deadline, self._fire)
                break


_watchdogs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, Watchdog]] = (
    weakref.WeakKeyDictionary()
)


def watchdog_for(loop: asyncio.AbstractEventLoop, seconds: float) -> Watchdog:
    """The watchdog of ``loop`` for deadlines ``seconds`` long."""
    per_loop = _watchdogs.get(loop)
    if per_loop is None:
        per_loop = _watchdogs[loop] = {}
    dog = per_loop.get(seconds)
    if dog is None:
        dog = per_loop[seconds] = Watchdog(loop)
    return dog
