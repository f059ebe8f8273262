"""Stream wrappers: the query span ends when the response stream does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context

if TYPE_CHECKING:
    from ragprod.tracing._query import QueryScope

__all__ = ["TracedAsyncStream", "TracedStream"]


class _Stream:
    """What the sync and async wrappers share: the bookkeeping around one pull."""

    __slots__ = ("__weakref__", "_done", "_inner", "_scope")

    def __init__(self, inner: Any, scope: QueryScope) -> None:
        self._inner = inner
        self._scope = scope
        self._done = False

    def _enter(self) -> object:
        return otel_context.attach(self._scope.context)

    def _failed(self, exc: BaseException) -> None:
        self._done = True
        self._scope.fail(exc)

    def _got(self, piece: str) -> str:
        scope = self._scope
        scope.first_token()
        if scope.pieces is not None:
            scope.pieces.append(piece)
        return piece

    def _end(self, outcome: str) -> None:
        if not self._done:
            self._done = True
            self._scope.finish(self._scope.response, outcome)

    def __del__(self) -> None:
        if not self._done:
            self._end("cancelled")


class TracedStream(_Stream):
    """Wraps a response generator: the query span ends when the stream does."""

    __slots__ = ()

    def __init__(self, inner: Iterator[str], scope: QueryScope) -> None:
        super().__init__(inner, scope)

    def __iter__(self) -> TracedStream:
        return self

    def __next__(self) -> str:
        token = self._enter()
        try:
            piece = next(self._inner)
        except StopIteration:
            self._end("success")
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
        return self._got(piece)

    def close(self) -> None:
        """Stop early: close the inner generator and end the span (``cancelled``)."""
        if self._done:
            return
        close = getattr(self._inner, "close", None)
        try:
            if close is not None:
                close()
        finally:
            self._end("cancelled")


class TracedAsyncStream(_Stream):
    """Wraps an async response generator: the query span ends when the stream does."""

    __slots__ = ()

    def __init__(self, inner: AsyncIterator[str], scope: QueryScope) -> None:
        super().__init__(inner, scope)

    def __aiter__(self) -> TracedAsyncStream:
        return self

    async def __anext__(self) -> str:
        token = self._enter()
        try:
            piece: str = await self._inner.__anext__()
        except StopAsyncIteration:
            self._end("success")
            raise
        except BaseException as exc:
            self._failed(exc)
            raise
        finally:
            otel_context.detach(token)  # type: ignore[arg-type]
        return self._got(piece)

    async def aclose(self) -> None:
        """Stop early: close the inner generator and end the span (``cancelled``)."""
        if self._done:
            return
        aclose = getattr(self._inner, "aclose", None)
        try:
            if aclose is not None:
                await aclose()
        finally:
            self._end("cancelled")
