"""Run the demo's sections in order."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from ragprod._version import __version__
from ragprod.demo._core import DemoContext
from ragprod.demo._sections import SECTIONS
from ragprod.testing import capture_logs

__all__ = ["run_demo"]


def run_demo(
    *, redis_url: str | None = None, as_json: bool = False, out: TextIO | None = None
) -> dict[str, object]:
    """Run every demo section and return the machine-readable report.

    Each section's facts are under its key (``report["cache"]["speedup"]``...);
    ``report["timings_ms"]`` holds each section's wall time and
    ``report["total_ms"]`` the whole run's. The structlog events of each
    section are captured (they never reach stdout) for the sections to check.
    Whatever sections installed (the LlamaIndex-to-OTel bridge, Redis keys
    under the demo's own prefix) is removed before this returns, also when a
    section fails.

    Args:
        redis_url: a Redis URL for the sections that use an L2 tier.
        as_json: print one JSON document instead of the walkthrough.
        out: where to print (default: stdout).
    """
    ctx = DemoContext(redis_url=redis_url, as_json=as_json, out=out or sys.stdout)
    started = time.perf_counter()
    timings: dict[str, float] = {}
    ctx.say(f"ragprod {__version__} demo (offline: local hashing embedding, extractive LLM)")
    with ctx.cleanup:
        for number, section in enumerate(SECTIONS, start=1):
            ctx._section = section.key
            ctx.say()
            ctx.say(f"[{number}/{len(SECTIONS)}] {section.title}")
            with ctx.timed() as t, capture_logs() as events:
                ctx.logs = events
                section.run(ctx)
            timings[section.key] = round(t["ms"], 2)
    total = (time.perf_counter() - started) * 1000
    ctx.report["timings_ms"] = timings
    ctx.report["total_ms"] = round(total, 2)
    ctx.say()
    per_section = ", ".join(f"{key} {ms / 1000:.2f}" for key, ms in timings.items())
    ctx.say(f"done in {total / 1000:.2f} s ({per_section})")
    if as_json:
        print(json.dumps(ctx.report, indent=2, default=str), file=ctx.out)
    return ctx.report
