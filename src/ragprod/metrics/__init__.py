"""Prometheus metrics for ragprod, on an injectable registry."""

from ragprod.metrics._registry import DEFAULT_LATENCY_BUCKETS, RagMetrics

__all__ = ["DEFAULT_LATENCY_BUCKETS", "RagMetrics"]
