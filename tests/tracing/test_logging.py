"""ragprod.logging: JSON lines with trace ids, PII scrubbed, nothing configured unless asked."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from datetime import datetime

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from ragprod.errors import ConfigurationError
from ragprod.logging import (
    add_trace_context,
    configure_logging,
    make_pii_scrubber,
    scrub_pii,
    scrub_text,
)
from ragprod.metrics import RagMetrics
from ragprod.testing import FaultyQueryEngine, SpanCapture
from ragprod.tracing import TracedQueryEngine

from .conftest import CANARY


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]


def test_json_lines_with_iso_timestamp_and_level() -> None:
    """Each event is one JSON object with an ISO-8601 UTC timestamp and a level."""
    out = io.StringIO()
    configure_logging(stream=out)
    structlog.get_logger().info("ragprod.test.event", count=3)
    (event,) = lines(out)
    assert event["event"] == "ragprod.test.event"
    assert event["level"] == "info"
    assert event["count"] == 3
    assert datetime.fromisoformat(str(event["timestamp"]).replace("Z", "+00:00")).tzinfo


def test_log_lines_carry_the_trace_id_of_their_span(spans: SpanCapture) -> None:
    """An event logged inside a span has that span's trace and span ids; outside, none."""
    out = io.StringIO()
    configure_logging(stream=out)
    log = structlog.get_logger()
    with spans.provider.get_tracer("t").start_as_current_span("work") as span:
        log.info("ragprod.test.inside")
    log.info("ragprod.test.outside")
    inside, outside = lines(out)
    context = span.get_span_context()
    assert inside["trace_id"] == format(context.trace_id, "032x")
    assert inside["span_id"] == format(context.span_id, "016x")
    assert "trace_id" not in outside


def test_query_event_matches_its_span_and_hides_the_query(
    spans: SpanCapture, metrics: RagMetrics
) -> None:
    """ragprod.query.completed carries the query span's ids and no query text."""
    out = io.StringIO()
    configure_logging(stream=out)
    engine = TracedQueryEngine(
        FaultyQueryEngine(), tracer_provider=spans.provider, metrics=metrics, name="docs"
    )
    engine.query(f"my mail is {CANARY}")
    (event,) = lines(out)
    (span,) = spans.spans
    assert event["event"] == "ragprod.query.completed"
    assert event["trace_id"] == format(span.context.trace_id, "032x")
    assert event["nodes"] == 0
    assert CANARY not in out.getvalue()


def test_pii_is_scrubbed_from_every_string_value() -> None:
    """E-mails, phones and card numbers in any (nested) value are replaced by markers."""
    out = io.StringIO()
    configure_logging(stream=out)
    structlog.get_logger().info(
        f"ragprod.test.{CANARY}",
        user=CANARY,
        nested={"phone": "+49 30 1234 5678", "cards": ["4111 1111 1111 1111"]},
    )
    text = out.getvalue()
    assert CANARY not in text
    assert "1234 5678" not in text
    assert "4111" not in text
    assert "<EMAIL>" in text
    assert "<PHONE>" in text
    assert "<CARD>" in text


def test_scrubbing_can_be_off_or_custom() -> None:
    """scrub_pii=False keeps values; a function replaces the built-in scrubber."""
    out = io.StringIO()
    configure_logging(stream=out, scrub_pii=False)
    structlog.get_logger().info("e", user=CANARY)
    configure_logging(stream=out, scrub_pii=lambda s: s.replace("Ada", "<NAME>"))
    structlog.get_logger().info("e", user="Ada")
    first, second = lines(out)
    assert first["user"] == CANARY
    assert second["user"] == "<NAME>"


def test_level_filters_and_bad_level_is_rejected() -> None:
    """Events below the level are dropped; an unknown level is a ConfigurationError."""
    out = io.StringIO()
    configure_logging(stream=out, level="WARNING")
    structlog.get_logger().info("dropped")
    structlog.get_logger().warning("kept")
    assert [e["event"] for e in lines(out)] == ["kept"]
    with pytest.raises(ConfigurationError):
        configure_logging(level="LOUD")


def test_console_format() -> None:
    """json=False renders plain console lines."""
    out = io.StringIO()
    configure_logging(json=False, stream=out)
    structlog.get_logger().info("ragprod.test.console", k=1)
    assert "ragprod.test.console" in out.getvalue()
    assert not out.getvalue().startswith("{")


def test_importing_and_using_ragprod_does_not_configure_logging() -> None:
    """ragprod never configures structlog or stdlib logging on its own."""
    code = textwrap.dedent(
        """
        import logging, structlog
        import ragprod.logging, ragprod.tracing
        from ragprod.testing import FaultyQueryEngine
        from ragprod.tracing import TracedQueryEngine
        TracedQueryEngine(FaultyQueryEngine()).query("q")
        assert not structlog.is_configured()
        assert logging.getLogger().handlers == []
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_processors_work_standalone() -> None:
    """add_trace_context leaves events outside spans alone; scrub_pii skips id fields."""
    assert add_trace_context(None, "info", {"event": "x"}) == {"event": "x"}
    event = scrub_pii(None, "info", {"event": "x", "trace_id": "1234567890123456", "n": 5})
    assert event == {"event": "x", "trace_id": "1234567890123456", "n": 5}
    custom = make_pii_scrubber(str.upper)
    assert custom(None, "info", {"event": "x"})["event"] == "X"


@given(st.text(max_size=200))
def test_scrub_text_is_idempotent(text: str) -> None:
    """Scrubbing scrubbed text changes nothing more."""
    once = scrub_text(text)
    assert scrub_text(once) == once


@given(user=st.from_regex(r"[a-z]{1,10}(\.[a-z]{1,8})?", fullmatch=True))
def test_scrub_text_removes_any_email(user: str) -> None:
    """Any e-mail address inside text is replaced by <EMAIL>."""
    address = f"{user}@example.org"
    assert address not in scrub_text(f"contact {address} today")


def test_a_failing_scrubber_withholds_values() -> None:
    """A scrubber that raises withholds the value; the log call itself does not fail."""

    def broken(text: str) -> str:
        raise ValueError("bug")

    out = io.StringIO()
    configure_logging(stream=out, scrub_pii=broken)
    structlog.get_logger().info("e", user=CANARY)
    (event,) = lines(out)
    assert event["user"] == "[withheld: scrubber failed]"
    assert CANARY not in out.getvalue()
