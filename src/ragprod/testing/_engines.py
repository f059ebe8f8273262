"""Scriptable query engines for resilience and cache tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping, Sequence

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.response.schema import (
    RESPONSE_TYPE,
    AsyncStreamingResponse,
    Response,
    StreamingResponse,
)
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.prompts.mixin import PromptMixinType
from llama_index.core.schema import QueryBundle

__all__ = ["FaultyQueryEngine"]

Failure = BaseException | type[BaseException] | None


class FaultyQueryEngine(BaseQueryEngine):
    """A ``BaseQueryEngine`` whose latency, failures and output you script.

    Args:
        answer: the response text, or a function of the query string.
        latency: seconds each call takes (``time.sleep`` / ``asyncio.sleep``,
            or the injected ``sleep``/``asleep``).
        failures: which calls fail: a mapping of call number (1-based) to the
            exception to raise, or a sequence whose n-th item (an exception,
            an exception class, or ``None`` for success) applies to call n;
            calls past the end of a sequence succeed.
        fail_always: raise this on every call (overrides ``failures``).
        streaming: return ``StreamingResponse`` / ``AsyncStreamingResponse``
            that yield the answer word by word.
        sleep: the blocking sleep used for ``latency``.
        asleep: the async sleep used for ``latency``.

    Attributes:
        calls: how many calls started (thread-safe).
        queries: the query strings received, in order.

    Example:
        >>> from ragprod.testing import FaultyQueryEngine
        >>> engine = FaultyQueryEngine(answer="ok", failures={1: TimeoutError()})
        >>> try:
        ...     engine.query("q")
        ... except TimeoutError:
        ...     pass
        >>> str(engine.query("q")), engine.calls
        ('ok', 2)
    """

    def __init__(
        self,
        answer: str | Callable[[str], str] = "ok",
        *,
        latency: float = 0.0,
        failures: Mapping[int, Failure] | Sequence[Failure] = (),
        fail_always: Failure = None,
        streaming: bool = False,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        callback_manager: CallbackManager | None = None,
    ) -> None:
        if latency < 0:
            raise ValueError("latency must not be negative")
        self._answer = answer
        self.latency = latency
        self._failures: dict[int, Failure] = (
            dict(failures) if isinstance(failures, Mapping) else dict(enumerate(failures, start=1))
        )
        self.fail_always = fail_always
        self.streaming = streaming
        self._sleep = sleep
        self._asleep = asleep
        self._lock = threading.Lock()
        self.calls = 0
        self.queries: list[str] = []
        super().__init__(callback_manager=callback_manager)

    def _get_prompt_modules(self) -> PromptMixinType:
        return {}

    def _start(self, query: QueryBundle) -> Failure:
        with self._lock:
            self.calls += 1
            self.queries.append(query.query_str)
            return self.fail_always or self._failures.get(self.calls)

    def _text(self, query: QueryBundle) -> str:
        answer = self._answer
        return answer(query.query_str) if callable(answer) else answer

    @staticmethod
    def _raise(failure: Failure) -> None:
        if failure is None:
            return
        if isinstance(failure, type):
            raise failure()
        raise failure

    def _query(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        failure = self._start(query_bundle)
        if self.latency:
            self._sleep(self.latency)
        self._raise(failure)
        text = self._text(query_bundle)
        if not self.streaming:
            return Response(response=text, metadata={"engine": "faulty"})
        return StreamingResponse(response_gen=_words(text), metadata={"engine": "faulty"})

    async def _aquery(self, query_bundle: QueryBundle) -> RESPONSE_TYPE:
        failure = self._start(query_bundle)
        if self.latency:
            await self._asleep(self.latency)
        self._raise(failure)
        text = self._text(query_bundle)
        if not self.streaming:
            return Response(response=text, metadata={"engine": "faulty"})

        async def agen() -> AsyncGenerator[str, None]:
            for piece in _words(text):
                yield piece

        return AsyncStreamingResponse(response_gen=agen(), metadata={"engine": "faulty"})


def _words(text: str) -> Generator[str, None, None]:
    """Yield ``text`` in word-sized pieces that join back to ``text``."""
    parts = text.split(" ")
    for index, part in enumerate(parts):
        yield part if index == len(parts) - 1 else part + " "
