"""Query metrics: content-free labels, shared series, and prometheus_client multiprocess mode."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from ragprod.metrics import RagMetrics
from ragprod.metrics._rag import QueryMetrics
from ragprod.testing import FaultyQueryEngine
from ragprod.tracing import TracedQueryEngine

from .conftest import CANARY

WORKER = textwrap.dedent(
    """
    import sys
    from ragprod.metrics import RagMetrics
    from ragprod.testing import FaultyQueryEngine
    from ragprod.tracing import TracedQueryEngine

    engine = TracedQueryEngine(
        FaultyQueryEngine(failures={2: ValueError("x")}), metrics=RagMetrics(), name="docs"
    )
    for i in range(int(sys.argv[1])):
        try:
            engine.query("q")
        except ValueError:
            pass
    """
)


def test_two_worker_processes_aggregate_in_multiprocess_mode(tmp_path: Path) -> None:
    """Counters, histograms and the in-flight gauge add up across two worker processes."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    workers = [
        subprocess.Popen([sys.executable, "-c", WORKER, "5"], env=env, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 0, err.decode()[-2000:]
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path))
    value = registry.get_sample_value
    assert value("ragprod_query_requests_total", {"engine": "docs", "outcome": "success"}) == 8
    assert value("ragprod_query_requests_total", {"engine": "docs", "outcome": "error"}) == 2
    assert (
        value("ragprod_query_duration_seconds_count", {"engine": "docs", "outcome": "success"}) == 8
    )
    assert value("ragprod_query_in_flight", {"engine": "docs"}) == 0
    assert value("ragprod_query_errors_total", {"engine": "docs", "error_type": "ValueError"}) == 2


def test_engines_on_one_registry_share_series(metrics: RagMetrics) -> None:
    """Two traced engines on one RagMetrics count into the same collectors, split by engine."""
    first = TracedQueryEngine(FaultyQueryEngine(), metrics=metrics, name="a")
    second = TracedQueryEngine(FaultyQueryEngine(), metrics=metrics, name="b")
    first.query("q")
    second.query("q")
    second.query("q")
    assert metrics.value("ragprod_query_requests_total", engine="a", outcome="success") == 1
    assert metrics.value("ragprod_query_requests_total", engine="b", outcome="success") == 2
    assert QueryMetrics.on(metrics).requests is QueryMetrics.on(metrics).requests


def test_metric_labels_never_carry_the_query(metrics: RagMetrics) -> None:
    """The exposition text of every query metric is free of the query text."""
    engine = TracedQueryEngine(
        FaultyQueryEngine(failures=[ValueError(CANARY)]), metrics=metrics, name="docs"
    )
    for _ in range(2):
        with contextlib.suppress(ValueError):
            engine.query(f"question about {CANARY}")
    exposition = generate_latest(metrics.registry).decode()
    assert "ragprod_query_requests_total" in exposition
    assert CANARY not in exposition


def test_cost_needs_a_price(metrics: RagMetrics) -> None:
    """Tokens of a model without a price are counted, but no cost is invented."""
    qm = QueryMetrics.on(metrics)
    qm.count_tokens("m", 1000, 10, prices={"other": (1.0, 1.0)})
    assert metrics.value("ragprod_llm_tokens_total", model="m", direction="input") == 1000
    assert metrics.value("ragprod_llm_cost_usd_total", model="m") is None
