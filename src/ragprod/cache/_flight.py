"""Single-flight: concurrent callers of one key share one computation."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import Future
from typing import Any, TypeVar

__all__ = ["Flights", "claim_flow"]

T = TypeVar("T")


class Flights:
    """Single-flight: concurrent callers of the same key share one computation.

    Threads share a ``concurrent.futures.Future``; asyncio tasks of one event
    loop share an ``asyncio.Future``. The first caller (the leader) computes in
    its own task, so the upstream call starts at once; waiters await the shared
    future through ``asyncio.shield`` (cancelling a waiter never cancels the
    computation). Waiters get the leader's result or its exception; if the
    leader itself is cancelled, a waiter takes over and computes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: dict[str, Future[Any]] = {}
        self._futures: dict[tuple[int, str], asyncio.Future[Any]] = {}

    def run(self, key: str, fn: Callable[[], T], on_wait: Callable[[], None]) -> T:
        with self._lock:
            future = self._threads.get(key)
            leader = future is None
            if future is None:
                future = self._threads[key] = Future()
        if not leader:
            on_wait()
            return future.result()  # type: ignore[no-any-return]
        try:
            result = fn()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                self._threads.pop(key, None)

    async def arun(
        self, key: str, factory: Callable[[], Awaitable[T]], on_wait: Callable[[], None]
    ) -> T:
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        while True:
            future = self._futures.get(slot)
            if future is None or future.get_loop() is not loop:
                return await self._lead(slot, loop, factory)
            on_wait()
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                if future.cancelled() and not _cancelling():
                    continue  # the leader was cancelled, not us: take over
                raise

    async def _lead(
        self,
        slot: tuple[int, str],
        loop: asyncio.AbstractEventLoop,
        factory: Callable[[], Awaitable[T]],
    ) -> T:
        future: asyncio.Future[Any] = loop.create_future()
        self._futures[slot] = future
        try:
            result = await factory()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no warning if nobody was waiting
            raise
        else:
            future.set_result(result)
            return result
        finally:
            if self._futures.get(slot) is future:
                del self._futures[slot]


def _cancelling() -> bool:
    """Whether this task itself is being cancelled (Python 3.11+; assume not before)."""
    cancelling = getattr(asyncio.current_task(), "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


def claim_flow(
    get_flow: Callable[[str], Generator[tuple[Any, ...], Any, tuple[Any, str | None]]],
    key: str,
    token: str,
    *,
    wait: float,
    ttl: float,
    poll: float,
    clock: Callable[[], float],
    miss: Any,
) -> Generator[tuple[Any, ...], Any, tuple[Any, bool]]:
    """Cross-process single-flight, as a flow of L2 operations.

    Take the Redis lock of ``key`` (``SET NX PX``). The holder computes. Others
    poll L2 for the value every ``poll`` seconds for at most ``wait`` seconds,
    then compute anyway (a crashed or slow holder never blocks anyone for
    long). Redis unavailable: compute at once.

    Returns ``(value found while waiting, or miss; whether this caller holds the lock)``.
    """
    acquired = yield ("acquire_lock", key, token, ttl)
    if acquired is None or acquired:
        return miss, bool(acquired)
    deadline = clock() + wait
    while clock() < deadline:
        yield ("sleep", poll)
        value, _tier = yield from get_flow(key)
        if value is not miss:
            return value, False
    return miss, False
