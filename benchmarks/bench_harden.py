"""Overhead of ``ragprod.harden()`` with every available layer, on the demo index.

Time ratios on a shared VM swing by tens of percent between rounds; for the
overhead figure that counts, see ``benchmarks/harden_instructions.py``
(callgrind instruction counts).

Goals (issue 9): every layer on adds <= 10% CPU to an L1 miss; an L1 hit through
the whole stack is >= 20x faster than the miss.
"""

from __future__ import annotations

import importlib
import itertools
import os
from typing import Any

from llama_index.core import VectorStoreIndex

import ragprod
from _harness import Suite
from ragprod.demo import load_corpus
from ragprod.testing import ExtractiveLLM, HashEmbedding


def _available(package: str) -> bool:
    try:
        importlib.import_module(f"{package}._step")
    except ImportError:
        return False
    return True


def _layers() -> dict[str, Any]:
    layers: dict[str, Any] = {"guard": True, "tracing": False}
    if _available("ragprod.tracing"):
        from opentelemetry.sdk.trace import TracerProvider

        from ragprod.tracing import Tracing

        layers["tracing"] = Tracing(tracer_provider=TracerProvider())
    if _available("ragprod.pii"):
        from ragprod.pii import PIIAnonymizer

        layers["pii"] = PIIAnonymizer(key=b"bench-key-0123456789abcdef012345")
    if _available("ragprod.cache"):
        from ragprod.cache import TieredCache

        layers["cache"] = TieredCache.memory()
    if _available("ragprod.resilience"):
        from ragprod.resilience import Resilience

        layers["resilience"] = Resilience()
    return layers


def run(suite: Suite) -> None:
    # Log the way a production app does: JSON lines (to a sink that drops them),
    # not structlog's unconfigured development console renderer.
    ragprod.configure_logging(stream=open(os.devnull, "w"), cache_loggers=True)  # noqa: SIM115
    index = VectorStoreIndex.from_documents(load_corpus(), embed_model=HashEmbedding(dim=256))
    bare = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=3)
    layers = _layers()
    hardened = ragprod.harden(bare, name="bench", **layers)
    on = ",".join(hardened.layers) or "none"
    counter = itertools.count()

    def bare_miss() -> object:
        return bare.query(f"How long do refunds take? #{next(counter)}")

    def hardened_miss() -> object:
        return hardened.query(f"How long do refunds take? #{next(counter)}")

    suite.compare(
        "L1 miss, every layer",
        bare_miss,
        hardened_miss,
        baseline_label="bare LlamaIndex query",
        rounds=41,
        note=f"layers: {on}; 30 docs, top_k=3; goal <= 1.10x CPU",
    )
    if "resilience" in hardened.layers:
        from ragprod.resilience import Resilience, Timeout

        inline = ragprod.harden(
            bare,
            name="bench-inline",
            **{**layers, "resilience": Resilience(timeout=Timeout(60.0, sync="check"))},
        )
        suite.compare(
            "L1 miss, every layer, inline timeout",
            bare_miss,
            lambda: inline.query(f"How long do refunds take? #{next(counter)}"),
            baseline_label="bare LlamaIndex query",
            rounds=41,
            note="as above with Timeout(sync='check'): no worker-thread hand-off",
        )

    async def abare_miss() -> object:
        return await bare.aquery(f"How long do refunds take? #{next(counter)}")

    async def ahardened_miss() -> object:
        return await hardened.aquery(f"How long do refunds take? #{next(counter)}")

    suite.acompare(
        "L1 miss, every layer, async",
        abare_miss,
        ahardened_miss,
        baseline_label="bare LlamaIndex aquery",
        rounds=41,
        note="goal <= 1.10x CPU",
    )
    if "cache" in hardened.layers:
        hardened.query("How long do refunds take?")
        suite.compare(
            "L1 hit vs bare query",
            lambda: bare.query("How long do refunds take?"),
            lambda: hardened.query("How long do refunds take?"),
            baseline_label="bare LlamaIndex query",
            rounds=41,
            note="goal: ratio <= 0.05 (>= 20x faster)",
        )
