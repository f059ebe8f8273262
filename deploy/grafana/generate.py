# ruff: noqa: E501  (PromQL reads best on one line)
"""Regenerate ``ragprod-dashboard.json``: ``python deploy/grafana/generate.py``.

The dashboard is written as data here (one tuple per panel) so that panels stay
uniform; ``tests/service/test_deploy.py`` checks every expression in the JSON
against the metrics ragprod exports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("ragprod-dashboard.json")
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'engine=~"$engine"'

# (row, title, kind, unit, [(expr, legend)], description)
PANELS: list[tuple[str, str, str, str, list[tuple[str, str]], str]] = [
    ("Traffic and errors", "Queries per second", "timeseries", "reqps", [
        (f"sum by (engine, outcome) (rate(ragprod_query_requests_total{{{SEL}}}[$__rate_interval]))",
         "{{engine}} {{outcome}}"),
    ], "Finished queries by engine (tenant in the example service) and outcome."),
    ("Traffic and errors", "Error ratio (excl. rejections)", "timeseries", "percentunit", [
        (f'sum by (engine) (rate(ragprod_query_errors_total{{{SEL},error_type!~"QueryRejectedError|RateLimitedError"}}[$__rate_interval]))'
         f" / sum by (engine) (rate(ragprod_query_requests_total{{{SEL}}}[$__rate_interval]))",
         "{{engine}}"),
    ], "Failed queries over all queries; guard rejections and rate limiting excluded."),
    ("Traffic and errors", "Errors by type", "timeseries", "reqps", [
        (f"sum by (error_type) (rate(ragprod_query_errors_total{{{SEL}}}[$__rate_interval]))",
         "{{error_type}}"),
    ], "Exception class names only, never messages."),
    ("Traffic and errors", "In flight", "timeseries", "short", [
        (f"sum by (engine) (ragprod_query_in_flight{{{SEL}}})", "{{engine}}"),
    ], "Queries started and not yet finished (streams until their last token)."),
    ("Latency", "Query latency p50 / p95 / p99", "timeseries", "s", [
        (f'histogram_quantile({q}, sum by (le) (rate(ragprod_query_duration_seconds_bucket{{{SEL},outcome="success"}}[$__rate_interval])))',
         f"p{int(q * 100)}")
        for q in (0.5, 0.95, 0.99)
    ], "Successful queries, cache hits included."),
    ("Latency", "Time to first token p95", "timeseries", "s", [
        (f"histogram_quantile(0.95, sum by (le, engine) (rate(ragprod_query_time_to_first_token_seconds_bucket{{{SEL}}}[$__rate_interval])))",
         "{{engine}}"),
    ], "Streaming queries only."),
    ("Latency", "Retrieval and LLM p95", "timeseries", "s", [
        ("histogram_quantile(0.95, sum by (le, retriever) (rate(ragprod_retrieval_duration_seconds_bucket[$__rate_interval])))",
         "retrieve {{retriever}}"),
        ("histogram_quantile(0.95, sum by (le, model) (rate(ragprod_llm_duration_seconds_bucket[$__rate_interval])))",
         "llm {{model}}"),
    ], "From the instrument() bridge of LlamaIndex's own spans."),
    ("Cache", "Cache hit ratio", "stat", "percentunit", [
        (f'sum(rate(ragprod_cache_queries_total{{{SEL},outcome=~"hit|shared"}}[$__rate_interval])) / sum(rate(ragprod_cache_queries_total{{{SEL}}}[$__rate_interval]))',
         "hit ratio"),
    ], "Queries answered from L1/L2 or shared with a concurrent identical query."),
    ("Cache", "Cache outcomes", "timeseries", "reqps", [
        (f"sum by (outcome) (rate(ragprod_cache_queries_total{{{SEL}}}[$__rate_interval]))", "{{outcome}}"),
        ("sum by (tier) (rate(ragprod_cache_hits_total[$__rate_interval]))", "hit {{tier}}"),
    ], "hit / miss / shared (single-flight), and hits by tier."),
    ("Cache", "Redis up", "stat", "short", [
        ("min(ragprod_cache_redis_up)", "redis up"),
    ], "0 while any process bypasses its L2 tier."),
    ("Cache", "Redis errors and L2 latency", "timeseries", "short", [
        ("sum(rate(ragprod_cache_redis_errors_total[$__rate_interval]))", "errors/s"),
        ("histogram_quantile(0.95, sum by (le) (rate(ragprod_cache_l2_seconds_bucket[$__rate_interval])))",
         "L2 p95 (s)"),
    ], "Redis failures degrade the cache to L1, never the query."),
    ("Resilience", "Breaker state", "state-timeline", "short", [
        ('max by (breaker, state) (ragprod_resilience_breaker_state{state!="closed"}) > 0', "{{breaker}} {{state}}"),
    ], "Shown while a breaker is not closed."),
    ("Resilience", "Breaker transitions", "timeseries", "short", [
        ("sum by (breaker, to_state) (increase(ragprod_resilience_breaker_transitions_total[$__rate_interval]))",
         "{{breaker}} -> {{to_state}}"),
    ], "State changes per interval."),
    ("Resilience", "Refused and retried", "timeseries", "reqps", [
        ("sum(rate(ragprod_resilience_rate_limited_total[$__rate_interval]))", "rate limited"),
        ("sum(rate(ragprod_resilience_bulkhead_rejected_total[$__rate_interval]))", "bulkhead full"),
        ("sum(rate(ragprod_resilience_timeouts_total[$__rate_interval]))", "timeouts"),
        ("sum(rate(ragprod_resilience_retries_total[$__rate_interval]))", "retries"),
        ("sum(rate(ragprod_resilience_fallbacks_total[$__rate_interval]))", "fallbacks"),
    ], "What the resilience layer did instead of (or before) calling the upstream."),
    ("Resilience", "Shared state store (Redis)", "timeseries", "short", [
        ("max(ragprod_resilience_store_degraded)", "degraded (1 = local state)"),
        ("sum(rate(ragprod_resilience_store_errors_total[$__rate_interval]))", "store errors/s"),
    ], "Rate-limit buckets and breaker state shared through Redis; local fallback while it is down."),
    ("Spend and safety", "Tokens per second", "timeseries", "short", [
        ("sum by (model, direction) (rate(ragprod_llm_tokens_total[$__rate_interval]))", "{{model}} {{direction}}"),
    ], "Input and output tokens reported by the LLM."),
    ("Spend and safety", "Estimated cost (USD / hour)", "timeseries", "currencyUSD", [
        ("sum by (model) (rate(ragprod_llm_cost_usd_total[$__rate_interval])) * 3600", "{{model}}"),
    ], "Needs a price table: Tracing(prices=...)."),
    ("Spend and safety", "Guard rejections", "timeseries", "reqps", [
        ("sum by (reason) (rate(ragprod_guard_rejections_total[$__rate_interval]))", "{{reason}}"),
    ], "Queries refused by QueryGuard, by reason code."),
    ("Spend and safety", "PII entities", "timeseries", "short", [
        ("sum(rate(ragprod_pii_entities_total[$__rate_interval]))", "entities/s"),
    ], "PII found and pseudonymized in queries and answers."),
    ("Service (example)", "HTTP responses by status", "timeseries", "reqps", [
        ('sum by (route, status) (rate(ragprod_service_requests_total{route!="/metrics"}[$__rate_interval]))',
         "{{route}} {{status}}"),
    ], "The example service's own counter; 429/503 carry a reason code in the body."),
    ("Service (example)", "HTTP latency p95", "timeseries", "s", [
        ("histogram_quantile(0.95, sum by (le, route) (rate(ragprod_service_request_duration_seconds_bucket[$__rate_interval])))",
         "{{route}}"),
    ], "Until the last byte, streams included."),
]  # fmt: skip


def panel(pid: int, x: int, y: int, title: str, kind: str, unit: str,
          targets: list[tuple[str, str]], description: str) -> dict[str, Any]:  # fmt: skip
    """One Grafana panel."""
    body: dict[str, Any] = {
        "id": pid,
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": 8, "w": 12 if kind != "stat" else 6, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {"refId": chr(ord("A") + i), "datasource": DS, "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }
    return body


def build() -> dict[str, Any]:
    """The dashboard as a dict."""
    panels: list[dict[str, Any]] = []
    pid, y, x, row = 1, 0, 0, None
    for row_title, title, kind, unit, targets, description in PANELS:
        if row_title != row:
            if x:
                y, x = y + 8, 0
            panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False,
                           "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})  # fmt: skip
            pid, y, row = pid + 1, y + 1, row_title
        item = panel(pid, x, y, title, kind, unit, targets, description)
        width = item["gridPos"]["w"]
        if x + width > 24:
            y, x = y + 8, 0
            item["gridPos"].update(x=0, y=y)
        panels.append(item)
        pid, x = pid + 1, x + width
    return {
        "__inputs": [],
        "annotations": {"list": []},
        "description": "ragprod: queries, latency, cache, resilience, spend and safety.",
        "editable": True,
        "graphTooltip": 1,
        "panels": panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["ragprod", "llamaindex", "rag"],
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "label": "Prometheus",
                    "current": {},
                },
                {
                    "name": "engine",
                    "type": "query",
                    "datasource": DS,
                    "label": "engine",
                    "query": {
                        "query": "label_values(ragprod_query_requests_total, engine)",
                        "refId": "engine",
                    },
                    "definition": "label_values(ragprod_query_requests_total, engine)",
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "refresh": 2,
                    "current": {"text": "All", "value": "$__all"},
                },
            ]
        },
        "time": {"from": "now-3h", "to": "now"},
        "timezone": "utc",
        "title": "ragprod",
        "uid": "ragprod-overview",
        "version": 1,
    }


if __name__ == "__main__":
    OUT.write_text(json.dumps(build(), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")
