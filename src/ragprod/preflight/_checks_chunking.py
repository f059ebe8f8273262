"""Checks on chunking and the token budget of one query."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

from ragprod.preflight._check import check, finding
from ragprod.preflight._context import CheckContext
from ragprod.preflight._finding import Finding

__all__ = ["CHUNKING_CHECKS", "EMBED_MAX_TOKENS", "QUERY_MARGIN_TOKENS"]

#: Tokens kept free for the user's question when computing the budget.
QUERY_MARGIN_TOKENS = 64

#: Maximum input length, in tokens, of well-known embedding models.
EMBED_MAX_TOKENS = {
    "text-embedding-3-small": 8191,
    "text-embedding-3-large": 8191,
    "text-embedding-ada-002": 8191,
    "BAAI/bge-small-en-v1.5": 512,
    "BAAI/bge-base-en-v1.5": 512,
    "BAAI/bge-large-en-v1.5": 512,
    "sentence-transformers/all-MiniLM-L6-v2": 256,
    "sentence-transformers/all-mpnet-base-v2": 384,
    "embed-english-v3.0": 512,
    "mistral-embed": 8192,
}


def _tokenizer() -> Callable[[str], list[Any]]:
    from llama_index.core.utils import get_tokenizer

    return get_tokenizer()


def _template_text(ctx: CheckContext) -> str:
    from llama_index.core.prompts.default_prompt_selectors import DEFAULT_TEXT_QA_PROMPT_SEL
    from llama_index.core.prompts.prompt_utils import get_empty_prompt_txt

    template = getattr(ctx.synthesizer, "_text_qa_template", None) or DEFAULT_TEXT_QA_PROMPT_SEL
    template = getattr(template, "default_template", template)
    try:
        return str(get_empty_prompt_txt(template))
    except Exception:
        return str(getattr(template, "template", ""))


def _metadata_tokens(ctx: CheckContext, parser: Any) -> int:
    """The longest metadata (embed or LLM mode) over the sample, in the parser's tokens."""
    if not ctx.documents:
        return 0
    tokenizer = getattr(parser, "_tokenizer", None) or _tokenizer()
    get_str = getattr(parser, "_get_metadata_str", None)
    longest = 0
    for doc in list(ctx.documents)[:50]:
        text = get_str(doc) if get_str is not None else _longest_metadata(doc)
        longest = max(longest, len(tokenizer(text)))
    return longest


def _longest_metadata(doc: Any) -> str:
    from llama_index.core.schema import MetadataMode

    embed = str(doc.get_metadata_str(mode=MetadataMode.EMBED))
    llm = str(doc.get_metadata_str(mode=MetadataMode.LLM))
    return embed if len(embed) > len(llm) else llm


@check("chunk-overlap", "RAGPROD-E010")
def check_chunk_overlap(ctx: CheckContext) -> Iterator[Finding]:
    """0 <= chunk_overlap < chunk_size on every live parser (setters skip this check)."""
    for where, parser in ctx.node_parsers:
        size = getattr(parser, "chunk_size", None)
        overlap = getattr(parser, "chunk_overlap", None)
        if not isinstance(size, int) or not isinstance(overlap, int):
            continue
        if size <= 0 or overlap < 0 or overlap >= size:
            yield finding(
                "RAGPROD-E010",
                f"{where}: chunk_overlap {overlap} is not in [0, chunk_size {size}); "
                "LlamaIndex only checks this in the constructor, not in attribute setters",
                value={"where": where, "chunk_size": size, "chunk_overlap": overlap},
                expected=f"0 <= chunk_overlap < {size}",
                fix=f"set chunk_overlap to at most {max(size // 5, 0)} (about 20% of chunk_size)",
            )


@check("stale-transformations", "RAGPROD-W016")
def check_stale_transformations(ctx: CheckContext) -> Iterator[Finding]:
    """Settings.transformations still uses Settings.node_parser (it caches the first one)."""
    parser = getattr(ctx.settings, "_node_parser", None)
    transformations = getattr(ctx.settings, "_transformations", None)
    if parser is None or not transformations or any(t is parser for t in transformations):
        return
    old = [type(t).__name__ for t in transformations if hasattr(t, "chunk_size")]
    if old:
        yield finding(
            "RAGPROD-W016",
            "Settings.transformations holds another node parser than Settings.node_parser: "
            "ingestion uses the transformations list (cached at first use), not the new parser",
            value=old,
            expected="Settings.node_parser among Settings.transformations",
            fix="after replacing Settings.node_parser, set Settings.transformations = "
            "[Settings.node_parser, ...]",
        )


@check("metadata-length", "RAGPROD-E015", "RAGPROD-W015")
def check_metadata_length(ctx: CheckContext) -> Iterator[Finding]:
    """Metadata of the sampled documents leaves room for text in every chunk."""
    if not ctx.documents:
        return
    for where, parser in ctx.node_parsers:
        size = getattr(parser, "chunk_size", None)
        if not isinstance(size, int) or not hasattr(parser, "split_text_metadata_aware"):
            continue
        longest = _metadata_tokens(ctx, parser)
        room = size - longest
        if room <= 0:
            yield finding(
                "RAGPROD-E015",
                f"{where}: document metadata takes {longest} tokens, more than chunk_size "
                f"{size}; ingestion raises 'Metadata length ... is longer than chunk size'",
                value=longest,
                expected=f"< {size} tokens",
                fix="exclude long metadata keys (excluded_embed_metadata_keys / "
                "excluded_llm_metadata_keys) or raise chunk_size",
            )
        elif room < 50:
            yield finding(
                "RAGPROD-W015",
                f"{where}: metadata leaves {room} tokens of text per chunk",
                value=longest,
                expected=f"<= {size - 50} tokens",
                fix="exclude long metadata keys or raise chunk_size",
            )


def _budget_numbers(ctx: CheckContext) -> tuple[int, int, str] | None:
    helper = ctx.prompt_helper
    if helper is not None:
        return int(helper.context_window), int(helper.num_output), "prompt helper"
    llm = ctx.llm
    if llm is None:
        return None
    try:
        meta = llm.metadata
    except Exception:
        return None
    num_output = meta.num_output if meta.num_output and meta.num_output > 0 else 256
    return int(meta.context_window), int(num_output), "LLM metadata"


@check("token-budget", "RAGPROD-E011", "RAGPROD-W011", "RAGPROD-W012")
def check_token_budget(ctx: CheckContext) -> Iterator[Finding]:
    """context_window - num_output - template - top_k x (chunk + metadata) fits, with margin."""
    numbers = _budget_numbers(ctx)
    if numbers is None:
        return
    window, num_output, source = numbers
    # the tokenizer LlamaIndex itself will count with: the prompt helper's, else the global one
    counter = getattr(ctx.prompt_helper, "_token_counter", None)
    tokenize = getattr(counter, "tokenizer", None) or _tokenizer()
    template = len(tokenize(_template_text(ctx)))
    available = window - num_output - template - QUERY_MARGIN_TOKENS
    detail = {
        "context_window": window,
        "num_output": num_output,
        "template_tokens": template,
        "query_margin": QUERY_MARGIN_TOKENS,
        "source": source,
    }
    if available <= 0:
        yield finding(
            "RAGPROD-E011",
            f"no room for context: window {window} - num_output {num_output} - template "
            f"{template} - query margin {QUERY_MARGIN_TOKENS} = {available}; the first "
            "query raises 'Calculated available context size ... was not non-negative'",
            value=detail,
            expected="> 0 tokens available for retrieved chunks",
            fix="lower num_output, use a larger context_window, or a shorter template",
        )
        return
    if num_output > window / 2:
        yield finding(
            "RAGPROD-W012",
            f"num_output {num_output} reserves more than half the context window {window}",
            value=num_output,
            expected=f"<= {window // 2}",
            fix="lower num_output (max_tokens) so retrieved context fits",
        )
    parsers = ctx.node_parsers
    metadata = _metadata_tokens(ctx, parsers[0][1]) if parsers else 0
    need = ctx.top_k * (ctx.chunk_size + metadata)
    if need > available:
        calls = math.ceil(need / available)
        yield finding(
            "RAGPROD-W011",
            f"top_k {ctx.top_k} x (chunk {ctx.chunk_size} + metadata {metadata}) = {need} "
            f"tokens exceeds the {available} available; each query needs about {calls} "
            "LLM calls (refine) or loses context",
            value={**detail, "needed": need, "available": available, "top_k": ctx.top_k},
            expected=f"<= {available} tokens",
            fix="lower similarity_top_k or chunk_size, or use a model with a larger window",
        )


@check("prompt-helper", "RAGPROD-E013", "RAGPROD-W013")
def check_stale_prompt_helper(ctx: CheckContext) -> Iterator[Finding]:
    """A cached prompt helper agrees with the LLM's context window."""
    pairs = []
    settings_helper = getattr(ctx.settings, "_prompt_helper", None)
    settings_llm = getattr(ctx.settings, "_llm", None)
    if settings_helper is not None and settings_llm is not None:
        pairs.append(("Settings", settings_helper, settings_llm))
    chat_helper = getattr(ctx.settings, "_chat_prompt_helper", None)
    if chat_helper is not None and settings_llm is not None:
        pairs.append(("Settings (chat)", chat_helper, settings_llm))
    synth_helper = getattr(ctx.synthesizer, "_prompt_helper", None)
    synth_llm = getattr(ctx.synthesizer, "_llm", None)
    if synth_helper is not None and synth_llm is not None and synth_helper is not settings_helper:
        pairs.append(("engine", synth_helper, synth_llm))
    for where, helper, llm in pairs:
        try:
            real = int(llm.metadata.context_window)
        except Exception:
            continue
        cached = int(helper.context_window)
        if cached > real:
            yield finding(
                "RAGPROD-E013",
                f"{where}: prompt helper context_window {cached} exceeds the LLM's {real}; "
                "prompts will overflow the model",
                value=cached,
                expected=f"<= {real}",
                fix="set the LLM first, then Settings.context_window (or leave it unset)",
            )
        elif cached < real:
            yield finding(
                "RAGPROD-W013",
                f"{where}: prompt helper context_window {cached} is stale: the LLM reports "
                f"{real} (Settings.context_window was read or set before Settings.llm)",
                value=cached,
                expected=real,
                fix="set Settings.llm before touching Settings.context_window, or set "
                "Settings.prompt_helper = None after changing the LLM",
            )


@check("embed-max-length", "RAGPROD-W014")
def check_embed_max_length(ctx: CheckContext) -> Iterator[Finding]:
    """chunk_size does not exceed the embedding model's maximum input length."""
    model = ctx.embed_model
    if model is None or not ctx.node_parsers:
        return
    limit = getattr(model, "max_length", None)
    if not isinstance(limit, int):
        limit = EMBED_MAX_TOKENS.get(str(getattr(model, "model_name", "")))
    if not isinstance(limit, int):
        return
    for where, parser in ctx.node_parsers:
        if isinstance(parser.chunk_size, int) and parser.chunk_size > limit:
            yield finding(
                "RAGPROD-W014",
                f"{where}: chunk_size {parser.chunk_size} exceeds the embedding model's "
                f"limit {limit}; the tail of each chunk is silently not embedded",
                value=parser.chunk_size,
                expected=f"<= {limit}",
                fix=f"set chunk_size to {limit} or less",
            )


CHUNKING_CHECKS = (
    check_chunk_overlap,
    check_stale_transformations,
    check_metadata_length,
    check_token_budget,
    check_stale_prompt_helper,
    check_embed_max_length,
)
