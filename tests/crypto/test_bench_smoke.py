"""The crypto benchmark runs (quick mode) and produces every row."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_bench_crypto_quick_run(redis_server_url: str) -> None:
    """bench_crypto.run fills a quick Suite with the codec, memory, Redis and rewrap rows."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from _harness import Suite

        spec = importlib.util.spec_from_file_location(
            "bench_crypto", ROOT / "benchmarks/bench_crypto.py"
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        suite = Suite(quick=True, area="crypto")
        module.run(suite)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    names = {r.name for r in suite.results}
    assert {"seal 1.5 KB record", "persist docstore", "rewrap throughput (CPU)"} <= names
    if importlib.util.find_spec("llama_index.storage.kvstore.redis") is not None:
        assert "Redis get_document" in names
    assert all(r.candidate.wall_us > 0 for r in suite.results)
