"""Run the demo's sections in order."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from ragprod._version import __version__
from ragprod.demo._core import DemoContext
from ragprod.demo._sections import SECTIONS

__all__ = ["run_demo"]


def run_demo(
    *, redis_url: str | None = None, as_json: bool = False, out: TextIO | None = None
) -> dict[str, object]:
    """Run every demo section and return the machine-readable report.

    Args:
        redis_url: a Redis URL for the sections that use an L2 tier.
        as_json: print one JSON document instead of the walkthrough.
        out: where to print (default: stdout).
    """
    ctx = DemoContext(redis_url=redis_url, as_json=as_json, out=out or sys.stdout)
    started = time.perf_counter()
    ctx.say(f"ragprod {__version__} demo (offline: local hashing embedding, extractive LLM)")
    for number, section in enumerate(SECTIONS, start=1):
        ctx._section = section.key
        ctx.say()
        ctx.say(f"[{number}/{len(SECTIONS)}] {section.title}")
        section.run(ctx)
    total = (time.perf_counter() - started) * 1000
    ctx.report["total_ms"] = round(total, 2)
    ctx.say()
    ctx.say(f"done in {total / 1000:.2f} s")
    if as_json:
        print(json.dumps(ctx.report, indent=2, default=str), file=ctx.out)
    return ctx.report
