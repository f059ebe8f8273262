"""The per-query record other code adds to while a traced query runs."""

from __future__ import annotations

from opentelemetry import context as otel_context

__all__ = ["QueryRecord", "current_query"]

_KEY = otel_context.create_key("ragprod.query")

Scalar = str | bool | int | float


class QueryRecord:
    """What one traced query accumulates on its way down and back up.

    It travels inside the OpenTelemetry context of the query span, so it
    reaches every thread and task the span reaches. The ``instrument()``
    bridge adds LLM token counts to it; other ragprod layers call
    :meth:`annotate` (for example ``cache_tier="l1"``). Annotations become
    ``ragprod.<key>`` span attributes and fields of the query's log event, so
    values must never be user content.
    """

    __slots__ = ("fields", "input_tokens", "llm_calls", "model", "output_tokens")

    def __init__(self) -> None:
        self.input_tokens: int | None = None
        self.output_tokens: int | None = None
        self.llm_calls = 0
        #: The model of the query's latest LLM call (labels streamed token counts).
        self.model: str | None = None
        self.fields: dict[str, Scalar] = {}

    def add_tokens(self, input_tokens: int | None, output_tokens: int | None) -> None:
        """Add one LLM call's token counts."""
        self.llm_calls += 1
        if input_tokens is not None:
            self.input_tokens = (self.input_tokens or 0) + input_tokens
        if output_tokens is not None:
            self.output_tokens = (self.output_tokens or 0) + output_tokens

    def annotate(self, **fields: Scalar) -> None:
        """Attach content-free facts (cache tier, breaker state, PII entity counts)."""
        self.fields.update(fields)


def current_query() -> QueryRecord | None:
    """The record of the traced query running in this context, if any.

    Example:
        >>> current_query() is None
        True
    """
    record = otel_context.get_value(_KEY)
    return record if isinstance(record, QueryRecord) else None


def with_record(ctx: otel_context.Context, record: QueryRecord) -> otel_context.Context:
    """``ctx`` plus ``record``."""
    return otel_context.set_value(_KEY, record, ctx)
