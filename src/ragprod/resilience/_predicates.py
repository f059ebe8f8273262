"""Exception predicates: small callables composed with ``|`` and ``&``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from ragprod.errors import (
    CircuitOpenError,
    QueryRejectedError,
    RagprodError,
    RateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)

__all__ = ["RETRYABLE", "ErrorPredicate", "on", "retry_after_of", "when"]


class ErrorPredicate:
    """A test on an exception, combinable with ``|`` (either), ``&`` (both) and ``~`` (not).

    Build one with :func:`on` (by type) or :func:`when` (by function). Breakers
    take them as ``record=``/``ignore=``, retry policies as ``retry_on=``.

    Example:
        >>> p = on(TimeoutError) | when(lambda e: getattr(e, "status", 0) >= 500)
        >>> p(TimeoutError()), p(ValueError())
        (True, False)
    """

    __slots__ = ("_fn", "_label")

    def __init__(self, fn: Callable[[BaseException], bool], label: str = "when(...)") -> None:
        self._fn = fn
        self._label = label

    def __call__(self, exc: BaseException) -> bool:
        return bool(self._fn(exc))

    def __or__(self, other: Callable[[BaseException], bool]) -> ErrorPredicate:
        o = _coerce(other)
        return ErrorPredicate(lambda e: self._fn(e) or o(e), f"({self._label} | {o._label})")

    def __and__(self, other: Callable[[BaseException], bool]) -> ErrorPredicate:
        o = _coerce(other)
        return ErrorPredicate(lambda e: self._fn(e) and o(e), f"({self._label} & {o._label})")

    def __invert__(self) -> ErrorPredicate:
        return ErrorPredicate(lambda e: not self._fn(e), f"~{self._label}")

    def __repr__(self) -> str:
        return self._label


def _coerce(fn: Callable[[BaseException], bool]) -> ErrorPredicate:
    return fn if isinstance(fn, ErrorPredicate) else ErrorPredicate(fn)


def on(*types: type[BaseException]) -> ErrorPredicate:
    """Match exceptions that are instances of any of ``types``.

    Example:
        >>> on(ConnectionError, TimeoutError)(ConnectionResetError())
        True
    """
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise TypeError("on() takes one or more exception classes")
    names = ", ".join(t.__name__ for t in types)
    return ErrorPredicate(lambda e: isinstance(e, types), f"on({names})")


def when(fn: Callable[[BaseException], bool]) -> ErrorPredicate:
    """Match exceptions for which ``fn(exc)`` is true (wraps any callable)."""
    return ErrorPredicate(fn, f"when({getattr(fn, '__name__', 'fn')})")


_TRANSIENT_NAMES = frozenset(
    {
        # httpx / httpcore / requests / aiohttp / openai / anthropic family names
        "ConnectError",
        "ConnectTimeout",
        "ReadTimeout",
        "WriteTimeout",
        "PoolTimeout",
        "ReadError",
        "RemoteProtocolError",
        "APIConnectionError",
        "APITimeoutError",
        "InternalServerError",
        "ServiceUnavailableError",
        "RateLimitError",
        "ServerDisconnectedError",
        "ClientConnectionError",
        "ConnectionError",
        "Timeout",
        "TimeoutError",
    }
)


def _status(exc: BaseException) -> int | None:
    for attr in ("status_code", "status", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_retryable(exc: BaseException) -> bool:
    if not isinstance(exc, Exception) or isinstance(exc, asyncio.CancelledError):
        return False
    if isinstance(exc, (CircuitOpenError, QueryRejectedError)):
        return False
    if isinstance(exc, (RateLimitedError, UpstreamTimeoutError)):
        return True
    if isinstance(exc, RagprodError) and not isinstance(exc, UpstreamUnavailableError):
        return False
    status = _status(exc)
    if status is not None:
        return status == 408 or status == 425 or status == 429 or status >= 500
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    return any(cls.__name__ in _TRANSIENT_NAMES for cls in type(exc).__mro__)


#: The default ``retry_on``: connection errors, timeouts, rate limits (HTTP 429,
#: ``RateLimitedError``) and 5xx-like provider errors (an integer ``status_code``
#: / ``status`` attribute, or well-known class names such as httpx's
#: ``ConnectError`` or openai's ``APIConnectionError``). Never 4xx client or auth
#: errors, ``CancelledError``, ``CircuitOpenError`` or ``QueryRejectedError``.
RETRYABLE = ErrorPredicate(_is_retryable, "RETRYABLE")


def retry_after_of(exc: BaseException) -> float | None:
    """The Retry-After an exception carries, in seconds, if any.

    Reads ``exc.retry_after`` (ragprod errors) or an HTTP ``Retry-After``
    header in seconds on ``exc.response.headers`` (httpx, openai).
    """
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    headers = getattr(getattr(exc, "response", None), "headers", None)
    if headers is not None:
        try:
            raw = headers.get("retry-after") or headers.get("Retry-After")
            if raw is not None:
                seconds = float(raw)
                return seconds if seconds >= 0 else None
        except (TypeError, ValueError, AttributeError):
            return None
    return None
