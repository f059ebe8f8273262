"""Span attribute helpers: truncation, scrubbing, a budget under OTel limits."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any

from llama_index.core.schema import NodeWithScore
from opentelemetry.trace import Span, Status, StatusCode
from opentelemetry.util.types import AttributeValue

__all__ = [
    "TRUNCATED",
    "UNSCRUBBABLE",
    "AttributeBudget",
    "clip",
    "node_attributes",
    "record_error",
    "safe_scrub",
]

TRUNCATED = "...[truncated]"
_DEFAULT_LIMIT = 128


UNSCRUBBABLE = "[withheld: scrubber failed]"


def safe_scrub(text: str, scrub: Callable[[str], str] | None) -> str:
    """``scrub(text)``; a scrubber that raises withholds the text instead of leaking it."""
    if scrub is None:
        return text
    try:
        return scrub(text)
    except Exception:
        return UNSCRUBBABLE


def clip(text: str, limit: int, scrub: Callable[[str], str] | None) -> str:
    """Scrub ``text`` (if a scrubber is set) and cut it to ``limit`` characters."""
    text = safe_scrub(text, scrub)
    if len(text) > limit:
        return text[: limit - len(TRUNCATED)] + TRUNCATED
    return text


class AttributeBudget:
    """Sets attributes on a span without letting the OTel count limit evict any.

    The SDK evicts the *oldest* attribute when a span is full, which silently
    drops the ones set first (usually the most important). This budget stops
    at the limit instead, keeps one slot for ``ragprod.attributes.dropped``,
    and records how many it refused. Callers set the most important
    attributes first, then call :meth:`close`, which writes them all in one
    ``set_attributes`` call (one lock round trip instead of one per key).
    """

    __slots__ = ("dropped", "left", "pending", "span")

    def __init__(self, span: Span) -> None:
        limits = getattr(span, "_limits", None)
        limit = getattr(limits, "max_span_attributes", None) or _DEFAULT_LIMIT
        used = len(getattr(span, "attributes", None) or ())
        self.span = span
        self.left = limit - used - 1
        self.dropped = 0
        self.pending: dict[str, AttributeValue] = {}

    def set(self, key: str, value: AttributeValue) -> None:
        """Queue one attribute, or count it as dropped if the span is full."""
        if key in self.pending:
            self.pending[key] = value
            return
        if self.left <= 0:
            self.dropped += 1
            return
        self.left -= 1
        self.pending[key] = value

    def close(self) -> None:
        """Write the queued attributes and the number refused, if any."""
        if self.dropped:
            self.pending["ragprod.attributes.dropped"] = self.dropped
        if self.pending:
            self.span.set_attributes(self.pending)
            self.pending = {}


def node_attributes(
    budget: AttributeBudget,
    prefix: str,
    nodes: Sequence[NodeWithScore],
    *,
    capture_content: bool,
    limit: int,
    scrub: Callable[[str], str] | None,
) -> None:
    """Node count, ids and scores (best first) as array attributes; texts last if captured."""
    budget.set(f"{prefix}.node_count", len(nodes))
    if not nodes:
        return
    budget.set(f"{prefix}.node_ids", [n.node.node_id for n in nodes])
    scores = [n.score for n in nodes]
    if all(score is not None for score in scores):
        budget.set(f"{prefix}.scores", [float(s) for s in scores if s is not None])
    if capture_content:
        budget.set(
            f"{prefix}.documents",
            [clip(n.node.get_content(), limit, scrub) for n in nodes],
        )


def error_type(exc: BaseException) -> str:
    """The ``error.type`` value for an exception: its qualified class name."""
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def record_error(span: Span, exc: BaseException, scrub: Callable[[str], str] | None) -> None:
    """Status ERROR, ``error.type`` and an exception event whose texts are scrubbed."""
    span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
    if not span.is_recording():
        return
    span.set_attribute("error.type", error_type(exc))
    message = str(exc)
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    message, stack = safe_scrub(message, scrub), safe_scrub(stack, scrub)
    attributes: dict[str, Any] = {"exception.message": message, "exception.stacktrace": stack}
    span.record_exception(exc, attributes=attributes, escaped=True)
