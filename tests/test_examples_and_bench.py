"""Examples run, and the benchmark harness produces ratios."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _harness import Suite, markdown  # noqa: E402


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name)
def test_example_runs(example: Path, redis_server_url: str) -> None:
    """Each example script runs offline and exits 0."""
    env = {**os.environ, "REDIS_URL": redis_server_url}
    proc = subprocess.run(
        [sys.executable, str(example)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]


def test_harness_reports_ratio_of_interleaved_runs() -> None:
    """A candidate doing twice the work shows a ratio above 1."""
    suite = Suite(quick=True)
    work = list(range(2000))
    result = suite.compare(
        "sum",
        lambda: sum(work),
        lambda: (sum(work), sum(work)),
        baseline_label="one sum",
    )
    assert result.wall_ratio > 1.0
    assert result.baseline.wall_us > 0
    table = markdown(suite.results)
    assert table.splitlines()[2].startswith("|  | sum | one sum |")
    assert f"{result.wall_ratio:.2f}x" in table
