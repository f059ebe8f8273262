"""How LlamaIndex dispatcher spans map to OTel spans: names, kinds, GenAI attributes."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.base.llms.base import BaseLLM
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.response_synthesizers.base import BaseSynthesizer
from opentelemetry.trace import SpanKind

__all__ = ["SKIP", "Kind", "classify", "llm_input", "model_name", "query_text", "usage"]

_CHAT = frozenset({"chat", "achat", "stream_chat", "astream_chat"})
_COMPLETE = frozenset({"complete", "acomplete", "stream_complete", "astream_complete"})
_EMBED = frozenset(
    {
        "get_query_embedding",
        "aget_query_embedding",
        "get_text_embedding",
        "aget_text_embedding",
        "get_text_embedding_batch",
        "aget_text_embedding_batch",
        "get_agg_embedding_from_queries",
        "aget_agg_embedding_from_queries",
    }
)
_RETRIEVE = frozenset({"retrieve", "aretrieve"})
_QUERY = frozenset({"query", "aquery"})


class Kind:
    """How spans of one (class, method) pair are named and annotated."""

    __slots__ = ("kind", "name", "operation", "role")

    def __init__(self, role: str, name: str, kind: SpanKind, operation: str | None) -> None:
        self.role = role
        self.name = name
        self.kind = kind
        self.operation = operation


SKIP = Kind("skip", "", SpanKind.INTERNAL, None)


def model_name(instance: Any) -> str:
    for attribute in ("model_name", "model"):
        value = getattr(instance, attribute, None)
        if isinstance(value, str) and value:
            return value
    try:
        value = instance.metadata.model_name
    except Exception:
        value = None
    return value if isinstance(value, str) and value else type(instance).__name__


def classify(instance: Any, qualname: str, all_spans: bool) -> Kind:
    method = qualname.rpartition(".")[2]
    if isinstance(instance, BaseNodePostprocessor) and method.endswith("postprocess_nodes"):
        # LlamaIndex only spans the private ``_postprocess_nodes``.
        name = f"postprocess {type(instance).__name__}"
        return Kind("postprocess", name, SpanKind.INTERNAL, "postprocess")
    if method.startswith("_"):
        return SKIP  # the public method around it already has a span
    if instance is None:
        return Kind("generic", qualname, SpanKind.INTERNAL, None) if all_spans else SKIP
    cls = type(instance).__name__
    if isinstance(instance, BaseLLM):
        # GenAI spans are named "<operation> <model>" per call: instances of one
        # class may use different models.
        if method in _CHAT:
            return Kind("llm", "chat", SpanKind.CLIENT, "chat")
        if method in _COMPLETE:
            return Kind("llm", "text_completion", SpanKind.CLIENT, "text_completion")
    elif isinstance(instance, BaseEmbedding):
        if method in _EMBED:
            return Kind("embedding", "embeddings", SpanKind.CLIENT, "embeddings")
    elif isinstance(instance, BaseRetriever) and method in _RETRIEVE:
        if getattr(instance, "_ragprod_traced", False):
            return SKIP
        return Kind("retrieve", f"retrieve {cls}", SpanKind.INTERNAL, "retrieve")
    elif isinstance(instance, BaseSynthesizer) and method in ("synthesize", "asynthesize"):
        return Kind("synthesize", f"synthesize {cls}", SpanKind.INTERNAL, "synthesize")
    if method in _QUERY:
        return Kind("query", f"query {cls}", SpanKind.INTERNAL, "query")
    if not all_spans:
        return SKIP
    return Kind("generic", f"{cls}.{method}", SpanKind.INTERNAL, None)


def query_text(bound_args: inspect.BoundArguments) -> str | None:
    for value in bound_args.arguments.values():
        if isinstance(value, str):
            return value
        text = getattr(value, "query_str", None)
        if isinstance(text, str):
            return text
    return None


def llm_input(bound_args: inspect.BoundArguments) -> str | None:
    arguments = bound_args.arguments
    if isinstance(arguments.get("prompt"), str):
        return str(arguments["prompt"])
    messages = arguments.get("messages")
    if messages:
        return "\n".join(f"{m.role}: {m.content}" for m in messages)
    return None


def _field(usage: Any, key: str) -> Any:
    return usage.get(key) if isinstance(usage, Mapping) else getattr(usage, key, None)


def usage(response: Any) -> tuple[int | None, int | None]:
    """Input and output tokens an LLM response reports (OpenAI or Anthropic style)."""
    sources: list[Any] = []
    raw = getattr(response, "raw", None)
    if raw is not None:
        usage = raw.get("usage") if isinstance(raw, Mapping) else getattr(raw, "usage", None)
        if usage is not None:
            sources.append(usage)
    extra = getattr(response, "additional_kwargs", None)
    if extra:
        sources.append(extra)
    for usage in sources:
        tokens_in = _field(usage, "prompt_tokens") or _field(usage, "input_tokens")
        tokens_out = _field(usage, "completion_tokens") or _field(usage, "output_tokens")
        if tokens_in is not None or tokens_out is not None:
            return (
                int(tokens_in) if tokens_in is not None else None,
                int(tokens_out) if tokens_out is not None else None,
            )
    return None, None
