"""The standard query-level collectors: requests, latency, tokens, in-flight.

The tracing layer creates these on the deployment's :class:`RagMetrics`, so a
hardened engine, a ``TracedRetriever`` and the ``instrument()`` bridge all
count into the same series. Label values are engine names, model names,
outcomes and exception class names only: never user content.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Gauge, Histogram

from ragprod.metrics._registry import RagMetrics

__all__ = ["TTFT_BUCKETS", "QueryMetrics"]

#: Histogram buckets for time to first token (seconds).
TTFT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class QueryMetrics:
    """The query, retrieval and LLM collectors of one :class:`RagMetrics`.

    Create it with :meth:`on`; calling it twice on the same ``RagMetrics``
    returns collectors backed by the same series.

    Metrics:
        ``ragprod_query_requests_total{engine,outcome}``: finished queries;
        outcome is ``success`` or ``error``.
        ``ragprod_query_duration_seconds{engine,outcome}``: wall time per query
        (for streams: until the stream is exhausted or closed).
        ``ragprod_query_time_to_first_token_seconds{engine}``: streaming only.
        ``ragprod_query_errors_total{engine,error_type}``: failures by
        exception class name.
        ``ragprod_query_in_flight{engine}``: queries started and not finished.
        ``ragprod_retrieval_duration_seconds{retriever}``: per retrieval.
        ``ragprod_llm_duration_seconds{model,operation}``: per LLM call.
        ``ragprod_llm_tokens_total{model,direction}``: ``input``/``output``.
        ``ragprod_llm_cost_usd_total{model}``: estimated, with a price table.

    Example:
        >>> from ragprod.metrics import RagMetrics
        >>> qm = QueryMetrics.on(RagMetrics())
        >>> qm.requests.labels(engine="docs", outcome="success").inc()
    """

    requests: Counter
    duration: Histogram
    time_to_first_token: Histogram
    errors: Counter
    in_flight: Gauge
    retrieval_duration: Histogram
    llm_duration: Histogram
    llm_tokens: Counter
    llm_cost: Counter

    @classmethod
    def on(cls, metrics: RagMetrics) -> QueryMetrics:
        """Get or create the standard collectors on ``metrics``."""
        return cls(
            requests=metrics.counter(
                "ragprod_query_requests_total", "Finished queries.", ("engine", "outcome")
            ),
            duration=metrics.histogram(
                "ragprod_query_duration_seconds",
                "Query duration, until the last token for streams.",
                ("engine", "outcome"),
            ),
            time_to_first_token=metrics.histogram(
                "ragprod_query_time_to_first_token_seconds",
                "Time from query start to the first streamed token.",
                ("engine",),
                buckets=TTFT_BUCKETS,
            ),
            errors=metrics.counter(
                "ragprod_query_errors_total",
                "Failed queries by error type.",
                ("engine", "error_type"),
            ),
            in_flight=metrics.gauge(
                "ragprod_query_in_flight", "Queries started and not yet finished.", ("engine",)
            ),
            retrieval_duration=metrics.histogram(
                "ragprod_retrieval_duration_seconds", "Retrieval duration.", ("retriever",)
            ),
            llm_duration=metrics.histogram(
                "ragprod_llm_duration_seconds", "LLM call duration.", ("model", "operation")
            ),
            llm_tokens=metrics.counter(
                "ragprod_llm_tokens_total", "LLM tokens by direction.", ("model", "direction")
            ),
            llm_cost=metrics.counter(
                "ragprod_llm_cost_usd_total", "Estimated LLM cost in US dollars.", ("model",)
            ),
        )

    def count_tokens(
        self,
        model: str,
        input_tokens: int | None,
        output_tokens: int | None,
        prices: Mapping[str, tuple[float, float]] | None = None,
    ) -> None:
        """Count one LLM call's tokens, and its estimated cost if ``model`` has a price.

        ``prices`` maps a model name to (USD per 1M input tokens, USD per 1M
        output tokens).
        """
        if input_tokens:
            self.llm_tokens.labels(model=model, direction="input").inc(input_tokens)
        if output_tokens:
            self.llm_tokens.labels(model=model, direction="output").inc(output_tokens)
        if prices is not None and model in prices:
            price_in, price_out = prices[model]
            cost = ((input_tokens or 0) * price_in + (output_tokens or 0) * price_out) / 1e6
            if cost > 0:
                self.llm_cost.labels(model=model).inc(cost)
