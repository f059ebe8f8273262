"""Span trees for the demo: finished OTel spans as nested dicts, drawn as text, searched."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan

__all__ = ["SHOWN", "count_in_spans", "draw", "span_tree", "span_texts"]

#: The attributes the demo prints: structure and numbers, never content.
SHOWN = (
    "cache.hit",
    "cache.tier",
    "ragprod.retrieval.top_k",
    "ragprod.retrieval.node_count",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "ragprod.outcome",
    "error.type",
)


def span_tree(spans: Sequence[ReadableSpan]) -> list[dict[str, Any]]:
    """The spans as trees: ``name``, ``ms``, the :data:`SHOWN` attributes, ``children``.

    Children are ordered by start time; a span whose parent was not captured
    is a root.
    """
    ids = {span.context.span_id for span in spans if span.context is not None}
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        parent = span.parent.span_id if span.parent is not None else None
        children.setdefault(parent if parent in ids else None, []).append(span)

    def node(span: ReadableSpan) -> dict[str, Any]:
        attributes = span.attributes or {}
        own = span.context.span_id if span.context is not None else None
        return {
            "name": span.name,
            "ms": round(((span.end_time or 0) - (span.start_time or 0)) / 1e6, 3),
            "attributes": {key: attributes[key] for key in SHOWN if key in attributes},
            "children": [node(child) for child in children.get(own, [])],
        }

    return [node(span) for span in children.get(None, [])]


def draw(tree: Sequence[dict[str, Any]], indent: str = "    ") -> list[str]:
    """Text lines of a span tree, one span a line, with its time and shown attributes."""
    lines: list[str] = []

    def walk(nodes: Sequence[dict[str, Any]], prefix: str, root: bool) -> None:
        for position, item in enumerate(nodes):
            last = position == len(nodes) - 1
            branch = "" if root else ("└─ " if last else "├─ ")
            shown = " ".join(f"{k}={v}" for k, v in item["attributes"].items())
            lines.append(f"{indent}{prefix}{branch}{item['name']}  {item['ms']:.2f} ms  {shown}")
            below = prefix if root else prefix + ("   " if last else "│  ")
            walk(item["children"], below, False)

    walk(tree, "", True)
    return [line.rstrip() for line in lines]


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)
    elif value is not None:
        yield str(value)


def span_texts(span: ReadableSpan) -> Iterator[str]:
    """Every text a span carries: name, status, attribute and event attribute values."""
    yield span.name
    if span.status.description:
        yield span.status.description
    for value in (span.attributes or {}).values():
        yield from _strings(value)
    for event in span.events:
        yield event.name
        for value in (event.attributes or {}).values():
            yield from _strings(value)


def count_in_spans(spans: Iterable[ReadableSpan], needles: Iterable[str]) -> int:
    """How many (span text, needle) pairs have the needle inside the text."""
    wanted = [n for n in needles if n]
    return sum(needle in text for span in spans for text in span_texts(span) for needle in wanted)
