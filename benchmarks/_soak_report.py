"""The soak's bookkeeping: samples, the /metrics reader, the summary and its table.

Kept apart from ``soak.py`` (which drives the load and the faults) so each stays small.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Sample", "Timeline", "is_unhandled", "markdown", "metric", "metric_sum", "summarise"]


@dataclass
class Sample:
    start: float
    latency: float
    status: int
    reason: str = ""
    cached: bool | None = None
    stream: bool = False
    tenant: str = ""
    fresh: bool = False


@dataclass
class Timeline:
    redis_killed: float = 0.0
    redis_restarted: float = 0.0
    redis_recovered: float | None = None
    fault_started: float = 0.0
    fault_cleared: float = 0.0
    breaker_states: list[tuple[float, str]] = field(default_factory=list)
    rss: list[tuple[float, int]] = field(default_factory=list)


def _values(text: str, name: str, **labels: str) -> list[float]:
    """Values of the samples called ``name`` whose labels include ``labels``."""
    out = []
    for line in text.splitlines():
        match = re.match(rf"{re.escape(name)}(\{{[^}}]*\}})?\s+(\S+)", line)
        if match is None:
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            out.append(float(match.group(2)))
    return out


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from Prometheus text, or None."""
    found = _values(text, name, **labels)
    return found[0] if found else None


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the matching samples."""
    return sum(_values(text, name, **labels))


def quantiles_ms(values: list[float]) -> dict[str, float]:
    """p50/p95/p99/max of ``values`` (seconds) in milliseconds."""
    ordered = sorted(values) or [float("nan")]
    at = {f"p{q}": ordered[min(len(ordered) - 1, q * len(ordered) // 100)] for q in (50, 95, 99)}
    return {k: round(v * 1000, 1) for k, v in {**at, "max": ordered[-1]}.items()}


def is_unhandled(s: Sample) -> bool:
    """A transport error, a 5xx that is not a clean 503, a broken stream, a missing Retry-After."""
    if s.status in (0, 500, 502, 504, 599) or ":no-retry-after" in s.reason:
        return True
    return s.status == 503 and not s.reason


def summarise(
    samples: list[Sample],
    timeline: Timeline,
    metrics_text: str,
    duration: float,
    *,
    request_timeout: float,
    open_seconds: float,
) -> dict[str, Any]:
    """Everything the soak reports, as a JSON-able dict."""
    statuses = Counter(s.status for s in samples)
    reasons = Counter(f"{s.status} {s.reason}" for s in samples if s.status != 200)
    ok = [s for s in samples if s.status == 200]
    latencies = [s.latency for s in samples]
    answered = [s for s in ok if s.cached is not None]
    after_fault = sorted(
        (s for s in ok if s.fresh and s.start >= timeline.fault_cleared), key=lambda s: s.start
    )
    recovery = (
        after_fault[0].start + after_fault[0].latency - timeline.fault_cleared
        if after_fault else None
    )  # fmt: skip
    warm = [rss for t, rss in timeline.rss if t >= 0.15 * duration]
    transitions = {
        f"{m.group(1)}->{m.group(2)}": float(m.group(3))
        for m in re.finditer(
            r'ragprod_resilience_breaker_transitions_total\{breaker="upstream",'
            r'from_state="(\w+)",to_state="(\w+)"\}\s+(\S+)', metrics_text
        )
    }  # fmt: skip
    hits = metric_sum(metrics_text, "ragprod_cache_queries_total", outcome="hit")
    shared = metric_sum(metrics_text, "ragprod_cache_queries_total", outcome="shared")
    total_cache = metric_sum(metrics_text, "ragprod_cache_queries_total")
    unhandled = [s for s in samples if is_unhandled(s)]
    overran = [s for s in samples if s.latency > request_timeout + 1.0]
    return {
        "duration_s": duration,
        "requests": len(samples),
        "throughput_rps": round(len(samples) / duration, 1),
        "status": {str(k): v for k, v in sorted(statuses.items())},
        "error_rate_by_status": {
            str(k): round(v / len(samples), 4) for k, v in sorted(statuses.items()) if k != 200
        },
        "non_200_reasons": dict(reasons.most_common()),
        "latency_ms": quantiles_ms(latencies),
        "latency_200_ms": quantiles_ms([s.latency for s in ok]),
        "cache_hit_ratio_responses": round(sum(1 for s in answered if s.cached) / len(answered), 3)
        if answered else None,
        "cache_hit_ratio_metrics": round((hits + shared) / total_cache, 3) if total_cache else None,
        "breaker_transitions": transitions,
        "breaker_timeline": timeline.breaker_states,
        "redis_killed_at_s": round(timeline.redis_killed, 2),
        "redis_restarted_at_s": round(timeline.redis_restarted, 2),
        "redis_recovery_s": round(timeline.redis_recovered - timeline.redis_restarted, 2)
        if timeline.redis_recovered is not None else None,
        "upstream_fault_s": [round(timeline.fault_started, 2), round(timeline.fault_cleared, 2)],
        "upstream_recovery_s": round(recovery, 2) if recovery is not None else None,
        "breaker_open_duration_s": open_seconds,
        "rss_mb_after_warmup": round(warm[0] / 2**20, 1) if warm else None,
        "rss_mb_end": round(warm[-1] / 2**20, 1) if warm else None,
        "rss_growth_pct": round((warm[-1] - warm[0]) / warm[0] * 100, 1) if warm else None,
        "rss_mb_profile": [
            round(timeline.rss[int(i * (len(timeline.rss) - 1) / 10)][1] / 2**20, 1)
            for i in range(11)
        ] if timeline.rss else [],
        "l1_evictions": metric_sum(metrics_text, "ragprod_cache_evictions_total"),
        "deadline_overruns": len(overran),
        "unhandled_errors": len(unhandled),
        "unhandled_examples": [asdict(s) for s in unhandled[:5]],
    }  # fmt: skip


def _join(items: dict[str, Any], fmt: str = "{}") -> str:
    return ", ".join(f"{k}: {fmt.format(v)}" for k, v in items.items()) or "none"


def markdown(report: dict[str, Any]) -> str:
    """The report as a two-column markdown table."""
    lat, ok = report["latency_ms"], report["latency_200_ms"]
    fault = report["upstream_fault_s"]
    rows = [
        ("requests", f"{report['requests']} ({report['throughput_rps']}/s)"),
        ("responses by status", _join(report["status"])),
        ("error rate by status", _join(report["error_rate_by_status"], "{:.2%}")),
        ("non-200 reasons", _join(report["non_200_reasons"])),
        ("latency p50 / p95 / p99 (all)",
         f"{lat['p50']} / {lat['p95']} / {lat['p99']} ms (max {lat['max']})"),
        ("latency p50 / p95 / p99 (200s)", f"{ok['p50']} / {ok['p95']} / {ok['p99']} ms"),
        ("cache hit ratio (responses / metrics)",
         f"{report['cache_hit_ratio_responses']} / {report['cache_hit_ratio_metrics']}"),
        ("breaker transitions", _join(report["breaker_transitions"], "{:g}")),
        (f"Redis {report['redis_fault']}ed / back / L2 back after",
         f"{report['redis_killed_at_s']} s / {report['redis_restarted_at_s']} s / "
         f"{report['redis_recovery_s']} s"),
        ("upstream fault window / recovered after",
         f"{fault[0]}-{fault[1]} s / {report['upstream_recovery_s']} s "
         f"(open_duration {report['breaker_open_duration_s']} s)"),
        ("RSS after warm-up / end / growth",
         f"{report['rss_mb_after_warmup']} MB / {report['rss_mb_end']} MB / "
         f"{report['rss_growth_pct']} %"),
        ("RSS profile (MB, every 10 % of the run)",
         " ".join(str(v) for v in report["rss_mb_profile"])),
        ("L1 evictions (L1 full at its bound)", f"{report['l1_evictions']:g}"),
        ("requests past deadline (+1 s)", str(report["deadline_overruns"])),
        ("unhandled errors", str(report["unhandled_errors"])),
    ]  # fmt: skip
    lines = ["| soak metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)
