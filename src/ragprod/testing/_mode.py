"""Test mode: retries without waiting, for fast tests of code that uses ragprod."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ragprod.resilience._mode import TEST_MODE

__all__ = ["is_test_mode", "set_test_mode", "test_mode"]


def set_test_mode(active: bool, *, attempts: int | None = None) -> None:
    """Turn test mode on or off for the whole process.

    While on, every :class:`~ragprod.resilience.RetryPolicy` retries without
    waiting (backoff and Retry-After are zero), and if ``attempts`` is given
    no policy makes more than that many attempts (``attempts=1`` turns
    retrying off). Like stamina's ``set_testing``.

    Args:
        active: on or off.
        attempts: a cap on attempts while on (``None``: keep each policy's).
    """
    if attempts is not None and attempts < 1:
        raise ValueError("attempts must be at least 1")
    TEST_MODE.active = active
    TEST_MODE.attempts = attempts if active else None


def is_test_mode() -> bool:
    """Whether test mode is on."""
    return TEST_MODE.active


@contextlib.contextmanager
def test_mode(*, attempts: int | None = None) -> Iterator[None]:  # noqa: PT028
    """Test mode for the ``with`` block; restores the previous mode afterwards.

    Example:
        >>> from ragprod.resilience import RetryPolicy
        >>> from ragprod.testing import test_mode
        >>> with test_mode():
        ...     RetryPolicy(initial=10).backoff(1)
        0.0
    """
    previous = (TEST_MODE.active, TEST_MODE.attempts)
    set_test_mode(True, attempts=attempts)
    try:
        yield
    finally:
        TEST_MODE.active, TEST_MODE.attempts = previous


# pytest would otherwise try to collect ``test_mode`` when users import it into a test module.
test_mode.__test__ = False  # type: ignore[attr-defined]
