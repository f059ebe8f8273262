"""The anonymizer as the log scrubber: canaries never reach the log lines."""

from __future__ import annotations

import io
import json

import structlog

from ragprod.logging import configure_logging
from ragprod.pii import PIIAnonymizer

CANARIES = {
    "user": "Dear Mr. Canary Birdsong",
    "card": "4111 1111 1111 1111",
    "secret": "token ghp_CANARY0123456789abcdefghijklmnopqrstuv",
    "dsn": "postgres://canary:Canary-Pa55@db:5432/app",
}


def test_structlog_lines_are_scrubbed_by_the_anonymizer() -> None:
    """configure_logging(scrub_pii=pii.scrub) removes names, cards, tokens, credentials."""
    out = io.StringIO()
    configure_logging(stream=out, scrub_pii=PIIAnonymizer(key=b"scrub-key-0123456789").scrub)
    try:
        structlog.get_logger("ragprod.test").info("ragprod.pii.test", **CANARIES)
    finally:
        structlog.reset_defaults()
    line = json.loads(out.getvalue())
    assert "Canary" not in out.getvalue()
    assert "4111" not in out.getvalue()
    assert line["card"] == "<CREDIT_CARD>"
    assert line["dsn"] == "postgres://<URL_CREDENTIALS>@db:5432/app"


def test_spans_are_scrubbed_by_the_anonymizer() -> None:
    """Tracing(scrubber=pii.scrub) keeps canaries out of captured span attributes."""
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    import ragprod
    from ragprod.testing import FaultyQueryEngine
    from ragprod.tracing import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    pii = PIIAnonymizer(key=b"scrub-key-0123456789")
    tracing = Tracing(tracer_provider=provider, capture_content=True, scrubber=pii.scrub)
    inner = FaultyQueryEngine(answer=lambda q: "Answer for " + q)
    engine = ragprod.harden(inner, tracing=tracing, pii=pii)
    answer = str(engine.query(f"{CANARIES['user']}, card {CANARIES['card']}"))
    assert "Canary Birdsong" in answer  # the caller gets the real values back
    spans = exporter.get_finished_spans()
    assert spans
    dump = repr([dict(s.attributes or {}) for s in spans] + [s.events for s in spans])
    assert "Canary" not in dump
    assert "4111" not in dump
    assert "Canary" not in inner.queries[-1]
