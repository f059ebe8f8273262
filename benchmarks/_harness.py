"""A small A/B benchmark harness: interleaved runs in one process, results as ratios.

Each comparison times a *baseline* (the real alternative: bare LlamaIndex, raw
Redis, pybreaker, ...) and a *candidate* (ragprod) in alternating batches in the
same process, so drift in machine load hits both alike. Per call it records
wall time (``perf_counter_ns``) and CPU time (``process_time_ns``); it reports
medians over the batches, the spread (interquartile range over median) and the
candidate/baseline ratio of medians.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Result", "Suite"]


@dataclass(frozen=True, slots=True)
class Stat:
    """Per-call medians and relative spread over batches, in microseconds."""

    wall_us: float
    cpu_us: float
    spread: float


@dataclass(frozen=True, slots=True)
class Result:
    """One comparison: baseline vs candidate."""

    area: str
    name: str
    baseline_label: str
    candidate_label: str
    baseline: Stat
    candidate: Stat
    note: str = ""

    @property
    def wall_ratio(self) -> float:
        return (
            self.candidate.wall_us / self.baseline.wall_us
            if self.baseline.wall_us
            else float("nan")
        )

    @property
    def cpu_ratio(self) -> float:
        return (
            self.candidate.cpu_us / self.baseline.cpu_us if self.baseline.cpu_us else float("nan")
        )


def _stat(wall: list[float], cpu: list[float]) -> Stat:
    med = statistics.median(wall)
    if len(wall) >= 4:
        q = statistics.quantiles(wall, n=4)
        spread = (q[2] - q[0]) / med if med else 0.0
    else:
        spread = 0.0
    return Stat(wall_us=med, cpu_us=statistics.median(cpu), spread=spread)


def _time_batch(fn: Callable[[], object], n: int) -> tuple[float, float]:
    c0, w0 = time.process_time_ns(), time.perf_counter_ns()
    for _ in range(n):
        fn()
    w1, c1 = time.perf_counter_ns(), time.process_time_ns()
    return (w1 - w0) / n / 1000, (c1 - c0) / n / 1000


@dataclass
class Suite:
    """Collects results; ``quick=True`` runs few, short batches (for smoke tests)."""

    quick: bool = False
    results: list[Result] = field(default_factory=list)
    area: str = ""

    def compare(
        self,
        name: str,
        baseline: Callable[[], object],
        candidate: Callable[[], object],
        *,
        baseline_label: str,
        candidate_label: str = "ragprod",
        rounds: int = 15,
        min_batch_seconds: float = 0.02,
        note: str = "",
    ) -> Result:
        """Time two sync callables in interleaved batches and record the result."""
        if self.quick:
            rounds, min_batch_seconds = 3, 0.001
        baseline()
        candidate()  # warm up both (imports, caches, lazy connections)
        n = 1
        while True:
            wall_us, _ = _time_batch(baseline, n)
            if wall_us * n / 1e6 >= min_batch_seconds or n >= 1_000_000:
                break
            n *= 4
        samples: dict[str, tuple[list[float], list[float]]] = {"a": ([], []), "b": ([], [])}
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            for r in range(rounds):
                order = (("a", baseline), ("b", candidate))
                for key, fn in order if r % 2 == 0 else reversed(order):
                    wall, cpu = _time_batch(fn, n)
                    samples[key][0].append(wall)
                    samples[key][1].append(cpu)
                gc.collect()
        finally:
            if gc_was_enabled:
                gc.enable()
        result = Result(
            area=self.area,
            name=name,
            baseline_label=baseline_label,
            candidate_label=candidate_label,
            baseline=_stat(*samples["a"]),
            candidate=_stat(*samples["b"]),
            note=note,
        )
        self.results.append(result)
        return result

    def acompare(
        self,
        name: str,
        baseline: Callable[[], Awaitable[object]],
        candidate: Callable[[], Awaitable[object]],
        **kwargs: object,
    ) -> Result:
        """Like :meth:`compare` for coroutine functions, each call awaited on one loop."""
        loop = asyncio.new_event_loop()
        try:
            return self.compare(
                name,
                lambda: loop.run_until_complete(baseline()),
                lambda: loop.run_until_complete(candidate()),
                **kwargs,  # type: ignore[arg-type]
            )
        finally:
            loop.close()

    def record(self, result: Result) -> None:
        """Add a result measured another way (e.g. a concurrency experiment)."""
        self.results.append(result)


def markdown(results: list[Result]) -> str:
    """The results as a Markdown table."""
    lines = [
        "| area | benchmark | baseline | baseline µs (wall/cpu) | ragprod µs (wall/cpu) "
        "| ratio wall | ratio cpu | spread | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r.area} | {r.name} | {r.baseline_label} | "
            f"{r.baseline.wall_us:.2f} / {r.baseline.cpu_us:.2f} | "
            f"{r.candidate.wall_us:.2f} / {r.candidate.cpu_us:.2f} | "
            f"{r.wall_ratio:.2f}x | {r.cpu_ratio:.2f}x | "
            f"±{max(r.baseline.spread, r.candidate.spread) * 100:.0f}% | {r.note} |"
        )
    return "\n".join(lines)
