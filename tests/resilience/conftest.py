"""Fixtures for the resilience tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ragprod.metrics import RagMetrics
from ragprod.testing import FakeClock, test_mode


@pytest.fixture
def clock() -> FakeClock:
    """A fake monotonic clock starting at 1000 s."""
    return FakeClock(1000.0)


@pytest.fixture
def metrics() -> RagMetrics:
    """A private metrics registry."""
    return RagMetrics()


@pytest.fixture
def no_wait() -> Iterator[None]:
    """Retries do not wait."""
    with test_mode():
        yield
