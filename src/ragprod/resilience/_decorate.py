"""The async half of the policies' decorator form (``@breaker``, ``@retry``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

__all__ = ["wrap_async"]

F = TypeVar("F", bound=Callable[..., Any])


def wrap_async(acall: Callable[..., Awaitable[Any]], fn: F) -> F | None:
    """``fn`` wrapped to run through ``acall`` if it is a coroutine function, else ``None``.

    The sync wrapper differs per policy (the breaker inlines its fast path), so
    each policy writes that one itself.
    """
    if not inspect.iscoroutinefunction(fn):
        return None

    @functools.wraps(fn)
    async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
        return await acall(fn, *args, **kwargs)

    return cast(F, async_wrapper)
