"""``LastGoodAnswer``: a fallback that serves the last successful answer to a query."""

from __future__ import annotations

import contextvars
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from llama_index.core.base.response.schema import Response

__all__ = ["CURRENT_KEY", "LastGoodAnswer"]

#: The key of the request being served (set by the resilience query step).
CURRENT_KEY: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "ragprod_resilience_key", default=None
)


class LastGoodAnswer:
    """A fallback that answers a failed query with its last successful answer.

    Give it to ``Resilience(fallback=LastGoodAnswer(...))`` on a query engine:
    the resilience step remembers every successful (non-streaming) response
    by its query text, and when a later call for the same text fails with a
    fallback-worthy error (the breaker is open, the upstream is down), the
    remembered response is served again, with ``metadata["ragprod_fallback"]``
    set and ``metadata["ragprod_stale_seconds"]`` saying how old it is. With
    nothing remembered (or older than ``max_age``), ``default`` answers, or
    the error is raised if ``default`` is ``None``.

    Answers live in this process's memory only (a bounded LRU of
    ``max_entries``); they are never written anywhere. Put the PII layer
    outside resilience (as ``harden`` does) so remembered queries are
    pseudonymized.

    Args:
        default: the answer when nothing fresh enough is remembered.
        max_entries: how many queries to remember.
        max_age: seconds after which a remembered answer is not served.
        clock: monotonic time.

    Example:
        >>> from ragprod.resilience import Resilience, ResilientQueryEngine
        >>> from ragprod.testing import FaultyQueryEngine
        >>> inner = FaultyQueryEngine(answer="5 days", failures={2: ConnectionError()})
        >>> policy = Resilience(retry=False, timeout=None, fallback=LastGoodAnswer())
        >>> engine = ResilientQueryEngine(inner, policy)
        >>> str(engine.query("refunds?")), str(engine.query("refunds?"))
        ('5 days', '5 days')
    """

    def __init__(
        self,
        default: str | None = "The service is degraded right now; please try again shortly.",
        *,
        max_entries: int = 1024,
        max_age: float | None = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.default = default
        self.max_entries = max_entries
        self.max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, tuple[float, Any]] = OrderedDict()

    def remember(self, key: str, answer: Any) -> None:
        """Keep ``answer`` as the last good answer for ``key``."""
        with self._lock:
            self._answers[key] = (self._clock(), answer)
            self._answers.move_to_end(key)
            if len(self._answers) > self.max_entries:
                self._answers.popitem(last=False)

    def recall(self, key: str) -> tuple[float, Any] | None:
        """``(age_seconds, answer)`` for ``key``, if remembered and fresh enough."""
        with self._lock:
            entry = self._answers.get(key)
        if entry is None:
            return None
        age = self._clock() - entry[0]
        if self.max_age is not None and age > self.max_age:
            return None
        return age, entry[1]

    def __call__(self, exc: BaseException) -> Any:
        key = CURRENT_KEY.get()
        found = self.recall(key) if key is not None else None
        if found is not None:
            age, answer = found
            if isinstance(answer, Response):
                metadata = {
                    **(answer.metadata or {}),
                    "ragprod_fallback": True,
                    "ragprod_stale_seconds": round(age, 3),
                }
                return Response(answer.response, list(answer.source_nodes), metadata)
            return answer
        if self.default is None:
            raise exc
        return self.default

    def __len__(self) -> int:
        return len(self._answers)

    def __repr__(self) -> str:
        return f"LastGoodAnswer(max_entries={self.max_entries}, max_age={self.max_age})"
