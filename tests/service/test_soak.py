"""benchmarks/soak.py: a short real run, and its accounting of what counts as unhandled."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.service.conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))

import _soak_report as soak_report


@pytest.mark.parametrize(
    ("status", "reason", "unhandled"),
    [
        (200, "", False),
        (429, "rate_limited", False),
        (503, "circuit_open", False),
        (503, "", True),
        (503, "circuit_open:no-retry-after", True),
        (500, "internal_error", True),
        (599, "stream_error:upstream_error", True),
        (0, "ReadTimeout", True),
    ],
)
def test_soak_counts_only_unclean_failures_as_unhandled(
    status: int, reason: str, unhandled: bool
) -> None:
    """Clean 429/503 with a reason are handled; bare 5xx, broken streams, transport errors not."""
    sample = soak_report.Sample(start=0.0, latency=0.01, status=status, reason=reason)
    assert soak_report.is_unhandled(sample) is unhandled


def test_metric_parser_reads_labelled_samples() -> None:
    """The /metrics reader finds a sample by labels and sums across label sets."""
    text = (
        'ragprod_cache_queries_total{engine="a",outcome="hit"} 3.0\n'
        'ragprod_cache_queries_total{engine="b",outcome="hit"} 2.0\n'
        'ragprod_cache_queries_total{engine="a",outcome="miss"} 5.0\n'
        "ragprod_cache_redis_up 1.0\n"
    )
    assert soak_report.metric(text, "ragprod_cache_redis_up") == 1.0
    assert soak_report.metric(text, "ragprod_cache_queries_total", engine="b", outcome="hit") == 2.0
    assert soak_report.metric_sum(text, "ragprod_cache_queries_total", outcome="hit") == 5.0
    assert soak_report.metric_sum(text, "ragprod_cache_queries_total") == 10.0


@pytest.mark.redis
def test_short_soak_run_stops_by_itself_without_unhandled_errors(tmp_path: Path) -> None:
    """A 10 s soak with Redis killed and an upstream outage ends on its own with 0 unhandled."""
    out = tmp_path / "soak.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/soak.py", "--duration", "10", "--clients", "4",
         "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert out.exists(), proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["requests"] > 0
    assert report["unhandled_errors"] == 0, report["unhandled_examples"]
    assert report["deadline_overruns"] == 0
    assert report["tracebacks_in_log"] == 0
    assert "| unhandled errors | 0 |" in proc.stdout
    assert report["redis_killed_at_s"] < report["redis_restarted_at_s"]
