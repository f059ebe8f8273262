"""Fault injection for soak runs and tests: make the upstream fail or stall on demand.

Only wired in when ``RAGPROD_FAULT_INJECTION=1``: then the service wraps its
LlamaIndex engine in :class:`FaultInjectingEngine` (below every ragprod layer,
exactly where a real LLM provider outage would surface) and exposes
``POST /admin/faults``. In any other deployment neither exists.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import RESPONSE_TYPE
from llama_index.core.schema import QueryBundle

__all__ = ["MODES", "FaultInjectingEngine", "FaultSwitch", "InjectedUpstreamError"]

#: ``off``: pass through; ``fail``: raise :class:`InjectedUpstreamError`;
#: ``slow``: stall ``delay`` seconds before answering.
MODES = ("off", "fail", "slow")


class InjectedUpstreamError(ConnectionError):
    """The upstream LLM is "down" (a ``ConnectionError``, as an HTTP client would raise)."""


class FaultSwitch:
    """The current fault: a mode, an optional expiry and a delay for ``slow``.

    Thread-safe; the clock is injectable so tests need not sleep.

    Example:
        >>> switch = FaultSwitch(clock=lambda: 100.0)
        >>> switch.set("fail", duration=5)
        >>> switch.state()["mode"]
        'fail'
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._mode = "off"
        self._until: float | None = None
        self._delay = 0.0
        self.injected = 0

    def set(self, mode: str, *, duration: float | None = None, delay: float = 1.0) -> None:
        """Switch to ``mode`` (one of :data:`MODES`), for ``duration`` seconds if given.

        Raises:
            ValueError: unknown mode, or a negative duration or delay.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if (duration is not None and duration < 0) or delay < 0:
            raise ValueError("duration and delay must be >= 0")
        with self._lock:
            self._mode = mode
            self._until = None if duration is None else self._clock() + duration
            self._delay = delay

    def current(self) -> tuple[str, float]:
        """The active ``(mode, delay)``; an expired fault reads as ``off``."""
        with self._lock:
            if self._until is not None and self._clock() >= self._until:
                self._mode, self._until = "off", None
            return self._mode, self._delay

    def state(self) -> dict[str, Any]:
        """JSON-able state, for ``GET /admin/faults``."""
        mode, delay = self.current()
        remaining = None if self._until is None else max(0.0, self._until - self._clock())
        return {"mode": mode, "delay": delay, "remaining": remaining, "injected": self.injected}

    def _fail(self) -> None:
        self.injected += 1
        raise InjectedUpstreamError("injected upstream outage")

    def before(self) -> None:
        """Apply the fault to a synchronous call."""
        mode, delay = self.current()
        if mode == "fail":
            self._fail()
        elif mode == "slow":
            self.injected += 1
            time.sleep(delay)

    async def abefore(self) -> None:
        """Apply the fault to an asynchronous call."""
        mode, delay = self.current()
        if mode == "fail":
            self._fail()
        elif mode == "slow":
            self.injected += 1
            await asyncio.sleep(delay)


class FaultInjectingEngine(BaseQueryEngine):
    """A query engine that consults a :class:`FaultSwitch` before delegating.

    Args:
        engine: the real engine.
        switch: the shared fault switch.
    """

    def __init__(self, engine: BaseQueryEngine, switch: FaultSwitch) -> None:
        self._engine = engine
        self._switch = switch
        super().__init__(callback_manager=engine.callback_manager)

    def _get_prompt_modules(self) -> dict[str, Any]:
        return {"engine": self._engine}

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        self._switch.before()
        return self._engine.query(query_bundle)

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        await self._switch.abefore()
        return await self._engine.aquery(query_bundle)
