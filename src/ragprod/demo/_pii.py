"""Demo section: PII pseudonymized on the way down, restored on the way up, absent elsewhere."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import redis
from llama_index.core.base.response.schema import Response
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.events.llm import (
    LLMCompletionEndEvent,
    LLMCompletionStartEvent,
)
from llama_index.core.instrumentation.events.retrieval import RetrievalStartEvent
from llama_index.core.schema import QueryBundle
from pydantic import PrivateAttr

from ragprod.cache import RedisCache, TieredCache
from ragprod.demo._core import DemoContext
from ragprod.demo._hardened import ENGINE_NAME, Hardened, traced
from ragprod.demo._spans import count_in_spans

__all__ = ["QUESTION", "TITLE", "pii_section"]

TITLE = "PII: pseudonymized before the cache key and the LLM, restored in the answer"
QUESTION = (
    "Priya Raman (priya.raman@example.com, +1 (212) 555-0142) was charged twice. "
    "Has the billing team confirmed it and issued a refund for the second charge?"
)


class _Seen(BaseEventHandler):
    """Records what LlamaIndex handed the retriever and the LLM (from its own events)."""

    _queries: list[str] = PrivateAttr(default_factory=list)
    _prompts: list[str] = PrivateAttr(default_factory=list)
    _completions: list[str] = PrivateAttr(default_factory=list)

    @classmethod
    def class_name(cls) -> str:
        return "RagprodDemoSeen"

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, RetrievalStartEvent):
            query = event.str_or_query_bundle
            self._queries.append(query.query_str if isinstance(query, QueryBundle) else query)
        elif isinstance(event, LLMCompletionStartEvent):
            self._prompts.append(event.prompt)
        elif isinstance(event, LLMCompletionEndEvent):
            self._completions.append(event.response.text)

    @property
    def texts(self) -> list[str]:
        """Everything recorded: retriever queries, LLM prompts and completions."""
        return [*self._queries, *self._prompts, *self._completions]


@contextmanager
def _watch() -> Iterator[_Seen]:
    seen = _Seen()
    root = get_dispatcher()
    root.add_event_handler(seen)
    try:
        yield seen
    finally:
        root.event_handlers = [h for h in root.event_handlers if h is not seen]


def _count(texts: Iterable[str], needles: Iterable[str]) -> int:
    wanted = [n for n in needles if n]
    return sum(needle in text for text in texts for needle in wanted)


def _redis_texts(hardened: Hardened) -> list[str]:
    """Every Redis key of the demo, and each value as bytes and read back by a fresh L2 tier."""
    assert hardened.redis_url is not None
    assert hardened.prefix is not None
    prefix = hardened.prefix
    reader = TieredCache(None, RedisCache(hardened.redis_url, prefix=prefix, socket_timeout=0.5))
    client = redis.Redis.from_url(hardened.redis_url, socket_timeout=1.0)
    texts: list[str] = []
    try:
        for raw_key in client.scan_iter(match=f"{prefix}:*", count=1000):
            key = raw_key.decode()
            texts.append(key)
            data = client.get(raw_key)
            if isinstance(data, bytes):
                texts.append(data.decode("utf-8", "replace"))
            if key.startswith(f"{prefix}:v:"):
                value, _ = reader.lookup_l2(key.removeprefix(f"{prefix}:v:"))
                texts.append(_response_text(value))
    finally:
        client.close()
        if reader.l2 is not None:
            reader.l2.close()
    return texts


def _response_text(value: Any) -> str:
    if isinstance(value, Response):
        nodes = [n.node.get_content() for n in value.source_nodes]
        return "\n".join([value.response or "", *nodes, str(value.metadata)])
    return str(value)


def _excerpt(text: str, needles: Iterable[str], width: int = 150) -> str:
    """The line of ``text`` holding the first needle, cut to ``width`` around it."""
    for line in text.splitlines():
        for needle in needles:
            at = line.find(needle)
            if at >= 0:
                start = max(0, at - 20)
                cut = line[start : start + width]
                return ("..." if start else "") + cut + ("..." if start + width < len(line) else "")
    return ""


def pii_section(ctx: DemoContext) -> None:
    """Ask about a customer by name, email and phone; show what each layer saw."""
    hardened = ctx.hardened
    assert hardened is not None, "the harden section runs first"
    assert ctx.index is not None
    engine, anonymizer = hardened.engine, hardened.anonymizer
    asked = anonymizer.anonymize(QUESTION)
    pseudonyms = list(asked.mapping)
    with traced(hardened) as spans, _watch() as seen:
        with ctx.timed() as t:
            response = engine.query(QUESTION)
        with ctx.timed() as again:
            engine.query(QUESTION)
        captured = spans.spans
    answer = str(response)
    llm_answer = seen._completions[-1] if seen._completions else ""
    below = seen._queries[0] if seen._queries else ""
    # The raw PII: the question's, and every value in the documents that were retrieved.
    raw = set(asked.mapping.values())
    for item in response.source_nodes:
        original = ctx.index.docstore.get_node(item.node.node_id)
        texts = [original.get_content(), *original.metadata.values()]
        for text in (t for t in texts if isinstance(t, str)):
            raw.update(text[e.start : e.end] for e in anonymizer.analyze(text))
    probes = sorted(raw)
    cache = engine.layers["cache"]
    key = cache.key(QueryBundle(below), hardened.cache.generation(ENGINE_NAME))  # type: ignore[attr-defined]
    root = next((s for s in captured if s.parent is None), None)
    query_attr = (root.attributes or {}).get("ragprod.query.text") if root is not None else None
    hits_after = [s for s in captured if (s.attributes or {}).get("cache.hit") is True]
    found = {
        "llm": _count(seen._prompts + seen._completions, probes),
        "spans": count_in_spans(captured, probes),
        "logs": _count((repr(event) for event in ctx.logs), probes),
    }
    checked = {"llm": len(seen._prompts), "spans": len(captured), "logs": len(ctx.logs)}
    if hardened.redis_url is not None:
        texts = _redis_texts(hardened)
        found["redis"] = _count(texts, probes)
        checked["redis"] = len(texts)

    types = sorted({e.type for e in asked.entities})
    ctx.say(f"  you asked:   {QUESTION}")
    ctx.say(f"  PII found:   {', '.join(types)} -> keyed pseudonyms (stable across processes)")
    ctx.say(f"  retriever, cache key and LLM got: {below}")
    ctx.say(f"  cache key:   {key[:16]}... (SHA-256 of the pseudonymized query, never raw text)")
    ctx.say(f"  LLM context: {_excerpt(seen._prompts[-1] if seen._prompts else '', pseudonyms)}")
    ctx.say(f"  LLM answer:  {llm_answer}")
    ctx.say(f"  you got:     {answer}")
    ctx.say(f"  span attribute ragprod.query.text = {query_attr!r}")
    where = ", ".join(f"{k} {found[k]} (of {checked[k]})" for k in found)
    ctx.say(f"  raw PII values ({len(probes)}: the question's, the retrieved tickets') in: {where}")
    ctx.say(f"  {t['ms']:.1f} ms; asked again: cache hit in {again['ms']:.2f} ms (same pseudonyms)")
    ctx.record("entity_types", types)
    ctx.record("pseudonymized_query", below)
    ctx.record("pseudonyms_in_query", sum(p in below for p in pseudonyms))
    ctx.record("raw_in_query_below", _count([below], asked.mapping.values()))
    ctx.record("llm_answer", llm_answer)
    ctx.record("answer", answer)
    ctx.record("pseudonyms_in_llm_answer", sum(p in llm_answer for p in pseudonyms))
    ctx.record("pseudonyms_in_answer", sum(p in answer for p in pseudonyms))
    ctx.record("originals_in_answer", _count([answer], asked.mapping.values()))
    ctx.record("span_query_text", query_attr)
    ctx.record("probes", len(probes))
    ctx.record("raw_found", found)
    ctx.record("checked", checked)
    ctx.record("repeat_hit", bool(hits_after))
    ctx.record("ms", round(t["ms"], 3))
