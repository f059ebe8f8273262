"""Tracing cost per query: ragprod vs bare LlamaIndex vs OpenInference, in one process.

The workload of issue 3: a VectorStoreIndex over 200 short documents, a local
hash embedding (256 and 1536 dimensions), the extractive stand-in LLM, top_k=3.
``instrument()`` and OpenInference both hook LlamaIndex's global root
dispatcher, so every configuration is installed right before each of its
batches and removed right after (the handler lists are restored exactly);
configurations are interleaved round by round, rotating their order.

Spans go to a real SDK ``TracerProvider`` with a ``BatchSpanProcessor`` and an
exporter that drops them (its worker thread's CPU time is counted: process
CPU time covers all threads). ragprod's log events go to ``/dev/null`` through
``ragprod.logging.configure_logging`` (JSON lines, PII scrubbing on).
"""

from __future__ import annotations

import gc
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from _harness import Result, Suite, _stat
from ragprod.logging import configure_logging
from ragprod.metrics import RagMetrics
from ragprod.testing import ExtractiveLLM, HashEmbedding
from ragprod.tracing import TracedQueryEngine, Tracing, instrument, uninstrument

QUERY = "how long do refunds for order class 3 take?"


class _DropExporter(SpanExporter):
    """Accepts spans and throws them away (an exporter that costs nothing)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def _provider(sampled: bool) -> TracerProvider:
    provider = TracerProvider() if sampled else TracerProvider(sampler=ALWAYS_OFF)
    provider.add_span_processor(BatchSpanProcessor(_DropExporter()))
    return provider


def _engine(dim: int) -> Any:
    docs = [
        Document(
            text=f"Policy {i}: refunds for order class {i % 7} are paid within {i % 30 + 1} "
            f"days. Shipping zone {i % 11} takes {i % 5 + 2} days."
        )
        for i in range(200)
    ]
    index = VectorStoreIndex.from_documents(docs, embed_model=HashEmbedding(dim=dim))
    return index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=3)


class _Handlers:
    """Snapshot and restore the root dispatcher's handler lists."""

    def __init__(self) -> None:
        self.root = get_dispatcher()
        self.spans = list(self.root.span_handlers)
        self.events = list(self.root.event_handlers)

    def restore(self) -> None:
        self.root.span_handlers = list(self.spans)
        self.root.event_handlers = list(self.events)


def _openinference(provider: TracerProvider) -> tuple[list[Any], list[Any]] | None:
    """OpenInference's handlers for ``provider`` (then removed again), or None if missing."""
    try:
        from openinference.instrumentation.llama_index import LlamaIndexInstrumentor
    except ImportError:
        return None
    clean = _Handlers()
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    root = clean.root
    added = (
        [h for h in root.span_handlers if h not in clean.spans],
        [h for h in root.event_handlers if h not in clean.events],
    )
    instrumentor.uninstrument()
    clean.restore()
    return added


def _nothing() -> None:
    return None


class _Config:
    """One measured configuration: what to call, and how to install/remove its handlers."""

    def __init__(
        self,
        label: str,
        fn: Callable[[], object],
        setup: Callable[[], None] = _nothing,
        teardown: Callable[[], None] = _nothing,
    ) -> None:
        self.label, self.fn, self.setup, self.teardown = label, fn, setup, teardown


def _interleave(
    configs: list[_Config], rounds: int, batch_seconds: float
) -> dict[str, tuple[list[float], list[float]]]:
    for config in configs:  # warm up each (first-call caches, lazy imports)
        config.setup()
        for _ in range(3):
            config.fn()
        config.teardown()
    configs[0].setup()
    start = time.perf_counter()
    configs[0].fn()
    n = max(1, int(batch_seconds / max(time.perf_counter() - start, 1e-6)))
    configs[0].teardown()
    samples: dict[str, tuple[list[float], list[float]]] = {c.label: ([], []) for c in configs}
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(configs)
            for config in configs[shift:] + configs[:shift]:
                config.setup()
                c0, w0 = time.process_time_ns(), time.perf_counter_ns()
                for _ in range(n):
                    config.fn()
                w1, c1 = time.perf_counter_ns(), time.process_time_ns()
                config.teardown()
                samples[config.label][0].append((w1 - w0) / n / 1000)
                samples[config.label][1].append((c1 - c0) / n / 1000)
                gc.collect()
    finally:
        gc.enable()
    return samples


def run(suite: Suite) -> None:
    rounds, batch = (3, 0.005) if suite.quick else (41, 0.03)
    devnull = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    configure_logging(stream=devnull, cache_loggers=True)
    sampled, unsampled = _provider(True), _provider(False)
    handlers = _Handlers()
    configs: list[_Config] = []
    labels: list[tuple[str, str, str]] = []  # (row name, candidate label, baseline label)

    for dim in (256, 1536):
        bare = _engine(dim)
        metrics = RagMetrics()
        traced = TracedQueryEngine(bare, tracer_provider=sampled, metrics=metrics, name="docs")
        traced_off = TracedQueryEngine(
            bare, tracer_provider=unsampled, metrics=metrics, name="docs"
        )
        base = f"bare {dim}"
        configs.append(_Config(base, lambda e=bare: e.query(QUERY)))

        def bridge(provider: TracerProvider = sampled, m: RagMetrics = metrics) -> None:
            instrument(provider, metrics=m)

        def unbridge() -> None:
            uninstrument()
            handlers.restore()

        configs.append(_Config(f"traced {dim}", lambda e=traced: e.query(QUERY)))
        labels.append((f"TracedQueryEngine, {dim}-dim", f"traced {dim}", base))
        if dim == 256:
            quiet = TracedQueryEngine(
                bare, metrics=metrics, name="docs", tracing=Tracing(unsampled, log_events=False)
            )
            configs.append(_Config("traced off 256", lambda e=traced_off: e.query(QUERY)))
            labels.append(("TracedQueryEngine, ALWAYS_OFF, 256-dim", "traced off 256", base))
            configs.append(_Config("traced off quiet 256", lambda e=quiet: e.query(QUERY)))
            labels.append(
                (
                    "TracedQueryEngine, ALWAYS_OFF, log_events=False, 256-dim",
                    "traced off quiet 256",
                    base,
                )
            )
        configs.append(
            _Config(f"instrument {dim}", lambda e=traced: e.query(QUERY), bridge, unbridge)
        )
        labels.append((f"TracedQueryEngine + instrument(), {dim}-dim", f"instrument {dim}", base))
        configs.append(
            _Config(
                f"unsampled {dim}",
                lambda e=traced_off: e.query(QUERY),
                lambda m=metrics: instrument(unsampled, metrics=m),
                unbridge,
            )
        )
        labels.append(
            (f"TracedQueryEngine + instrument(), ALWAYS_OFF, {dim}-dim", f"unsampled {dim}", base)
        )
        for provider, tag in ((sampled, ""), (unsampled, " ALWAYS_OFF")):
            oi = _openinference(provider)
            if oi is None:
                continue

            def oi_on(h: tuple[list[Any], list[Any]] = oi) -> None:
                handlers.root.span_handlers = handlers.spans + h[0]
                handlers.root.event_handlers = handlers.events + h[1]

            label = f"openinference{tag} {dim}"
            configs.append(_Config(label, lambda e=bare: e.query(QUERY), oi_on, handlers.restore))
            labels.append((f"OpenInference{tag}, {dim}-dim", label, base))

    samples = _interleave(configs, rounds, batch)
    stats = {label: _stat(*values) for label, values in samples.items()}
    for name, candidate, baseline in labels:
        # Paired per round (the two batches ran seconds apart): robust to load drift.
        added = statistics.median(
            c - b for c, b in zip(samples[candidate][1], samples[baseline][1], strict=True)
        )
        suite.record(
            Result(
                area=suite.area,
                name=name,
                baseline_label="bare LlamaIndex query",
                candidate_label=candidate,
                baseline=stats[baseline],
                candidate=stats[candidate],
                note=f"added CPU {added:+.0f} µs/query (median of paired rounds)",
            )
        )
