"""QueryGuard: malformed queries are refused with typed, content-free errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llama_index.core.schema import QueryBundle
from structlog.testing import capture_logs

from ragprod.errors import QueryRejectedError
from ragprod.guard import REASONS, QueryGuard
from ragprod.metrics import RagMetrics
from ragprod.testing import FaultyQueryEngine


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        ("x" * 41, "too_long"),
        ("refund\x00please", "control_characters"),
        ("bell\x07", "control_characters"),
        ("c1\x85control", "control_characters"),
        ("lone \ud800 surrogate", "invalid_unicode"),
    ],
)
def test_bad_queries_are_rejected_with_a_reason(run_query: Any, query: str, reason: str) -> None:
    """Each malformed query raises QueryRejectedError with its reason; the engine is not called."""
    inner = FaultyQueryEngine()
    engine = QueryGuard(max_chars=40).wrap(inner)
    with pytest.raises(QueryRejectedError) as exc:
        run_query(engine, query)
    assert exc.value.reason == reason
    assert inner.calls == 0


@pytest.mark.parametrize("query", [5, None, b"bytes", ["list"]])
def test_non_strings_are_rejected_not_crashed(run_query: Any, query: object) -> None:
    """A non-string query is a QueryRejectedError, not a pydantic crash inside LlamaIndex."""
    engine = QueryGuard().wrap(FaultyQueryEngine())
    with pytest.raises(QueryRejectedError) as exc:
        run_query(engine, query)
    assert exc.value.reason == "not_a_string"


def test_good_queries_pass_unchanged(run_query: Any) -> None:
    """Normal text, including newlines, tabs and non-Latin scripts, reaches the engine as is."""
    inner = FaultyQueryEngine(answer=lambda q: q)
    engine = QueryGuard(max_chars=100).wrap(inner)
    for query in [
        "How long do refunds take?",
        "Zeile 1\nZeile 2\tTab",
        "返金はいつですか",
        "x" * 100,
    ]:
        assert str(run_query(engine, query)) == query
    assert str(run_query(engine, QueryBundle("bundle"))) == "bundle"


def test_rejections_are_counted_by_reason_and_logged_without_content() -> None:
    """Metrics count by reason; the log event has reason and length, never the text."""
    metrics = RagMetrics()
    guard = QueryGuard(max_chars=10, metrics=metrics)
    secret = "my card 4111111111111111"
    with capture_logs() as logs, pytest.raises(QueryRejectedError) as exc:
        guard.check(secret)
    assert metrics.value("ragprod_guard_rejections_total", reason="too_long") == 1.0
    assert logs == [
        {"event": "ragprod.guard.rejected", "reason": "too_long", "length": 24, "log_level": "info"}
    ]
    assert "4111" not in str(exc.value)


def test_control_characters_can_be_allowed() -> None:
    """allow_control=True accepts control characters but still rejects surrogates."""
    guard = QueryGuard(allow_control=True)
    assert guard.check("a\x00b") == "a\x00b"
    with pytest.raises(QueryRejectedError):
        guard.check("\udfff")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_invalid_limits_are_refused(bad: object) -> None:
    """max_chars must be a positive integer."""
    with pytest.raises(ValueError, match="max_chars"):
        QueryGuard(max_chars=bad)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_guard_accepts_or_rejects_with_a_known_reason(text: str) -> None:
    """For any text, the guard returns it unchanged or rejects with a documented reason."""
    guard = QueryGuard(max_chars=50)
    try:
        assert guard.check(text) == text
    except QueryRejectedError as err:
        assert err.reason in REASONS
        assert err.length == len(text)
    else:
        assert text.strip()
        assert len(text) <= 50
