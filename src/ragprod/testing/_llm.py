"""An offline LLM that answers by quoting its context."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from llama_index.core.base.llms.types import (
    CompletionResponse,
    CompletionResponseGen,
    LLMMetadata,
)
from llama_index.core.llms.callbacks import llm_completion_callback
from llama_index.core.llms.custom import CustomLLM
from pydantic import Field

from ragprod.testing._text import content_words, count_tokens, split_sentences

__all__ = ["ExtractiveLLM"]

_QUERY_PATTERNS: Sequence[re.Pattern[str]] = (
    re.compile(r"Query:\s*(.*?)\s*\n\s*Answer:", re.DOTALL),
    re.compile(r"original query is as follows:\s*(.*?)\s*\n", re.IGNORECASE),
    re.compile(r"Question:\s*(.*?)\s*(?:\n|$)"),
)
_RULE = re.compile(r"^\s*-{5,}\s*$", re.MULTILINE)
NO_ANSWER = "The context does not contain an answer."


def _find_query(prompt: str) -> str:
    for pattern in _QUERY_PATTERNS:
        matches = pattern.findall(prompt)
        if matches:
            return str(matches[-1]).strip()
    lines = [line for line in prompt.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _find_context(prompt: str, query: str) -> str:
    parts = _RULE.split(prompt)
    if len(parts) >= 3:
        return "\n".join(parts[1:-1])
    return prompt.replace(query, " ")


class ExtractiveLLM(CustomLLM):
    """A deterministic stand-in for a hosted LLM, for demos and tests.

    It reads the query and the context out of the prompt LlamaIndex sends (the
    default question-answering and refine templates, or any prompt ending in
    ``Query: ... Answer:``) and answers with the ``max_sentences`` context
    sentences that share the most content words with the query, in their
    original order. It supports ``complete``/``chat``, streaming and async (all
    from the same logic), and reports token usage the way hosted LLMs do: in
    ``additional_kwargs`` and in ``raw["usage"]`` (``prompt_tokens``,
    ``completion_tokens``, ``total_tokens``).

    Args:
        max_sentences: how many sentences an answer holds at most.
        context_window: reported in ``metadata``.
        num_output: reported in ``metadata``.

    Example:
        >>> from ragprod.testing import ExtractiveLLM
        >>> llm = ExtractiveLLM()
        >>> prompt = "-----\\nRefunds take 5 days. Cats purr.\\n-----\\nQuery: refunds?\\nAnswer: "
        >>> llm.complete(prompt).text
        'Refunds take 5 days.'
    """

    max_sentences: int = Field(default=2, ge=1)
    context_window: int = Field(default=16384, ge=256)
    num_output: int = Field(default=256, ge=1)
    model_name: str = Field(default="ragprod-extractive")

    @classmethod
    def class_name(cls) -> str:
        return "RagprodExtractiveLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            context_window=self.context_window,
            num_output=self.num_output,
            is_chat_model=False,
            model_name=self.model_name,
        )

    def answer(self, prompt: str) -> str:
        """The answer this model gives to ``prompt``."""
        query = _find_query(prompt)
        wanted = set(content_words(query))
        scored: list[tuple[int, int, str]] = []
        seen: set[str] = set()
        for position, sentence in enumerate(split_sentences(_find_context(prompt, query))):
            if sentence in seen or _RULE.match(sentence):
                continue
            seen.add(sentence)
            score = len(wanted.intersection(content_words(sentence)))
            if score:
                scored.append((score, position, sentence))
        if not scored:
            return NO_ANSWER
        best = sorted(scored, key=lambda item: (-item[0], item[1]))[: self.max_sentences]
        return " ".join(sentence for _, _, sentence in sorted(best, key=lambda item: item[1]))

    @staticmethod
    def _usage(prompt: str, text: str) -> dict[str, int]:
        prompt_tokens = count_tokens(prompt)
        completion_tokens = count_tokens(text)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        text = self.answer(prompt)
        usage = self._usage(prompt, text)
        return CompletionResponse(text=text, raw={"usage": usage}, additional_kwargs=usage)

    @llm_completion_callback()
    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponseGen:
        text = self.answer(prompt)
        pieces = re.findall(r"\S+\s*", text)
        usage = self._usage(prompt, text)

        def gen() -> CompletionResponseGen:
            so_far = ""
            for index, piece in enumerate(pieces):
                so_far += piece
                last = index == len(pieces) - 1
                yield CompletionResponse(
                    text=so_far,
                    delta=piece,
                    raw={"usage": usage} if last else None,
                    additional_kwargs=usage if last else {},
                )

        return gen()
