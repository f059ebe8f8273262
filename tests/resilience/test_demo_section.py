"""The resilience section of the demo tells the outage story end to end."""

from __future__ import annotations

import io

from ragprod.demo._core import DemoContext
from ragprod.demo._sections import build_index
from ragprod.resilience._demo import TITLE, outage_section


def test_outage_section_opens_falls_back_and_recovers() -> None:
    """The section's report shows the breaker opening once, fallbacks, and a closed end state."""
    ctx = DemoContext(out=io.StringIO())
    build_index(ctx)
    ctx._section = "resilience"
    outage_section(ctx)
    report = ctx.report["resilience"]
    assert report["opened"] == 1.0
    assert report["fallbacks"] >= 4
    assert report["final_state"] == "closed"
    assert [state for state, _ in report["timeline"]][-1] == "open"
    text = ctx.out.getvalue()  # type: ignore[attr-defined]
    assert "degraded" in text
    assert TITLE
