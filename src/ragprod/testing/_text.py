"""Tokenising shared by the offline stand-in models."""

from __future__ import annotations

import re

__all__ = ["STOPWORDS", "content_words", "count_tokens", "split_sentences", "words"]

_WORD = re.compile(r"[^\W_]+(?:['\u2019][^\W_]+)?", re.UNICODE)
_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")

_STOPWORDS_TEXT = """a an and are as at be by can do does for from has have how i if in into is
it its me my no not of on or our so that the their them then there these they this to was we
what when where which who why will with you your"""
STOPWORDS = frozenset(_STOPWORDS_TEXT.split())


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text``."""
    return [w.lower() for w in _WORD.findall(text)]


def _stem(word: str) -> str:
    # A deliberately tiny stemmer: plurals only ("passwords" -> "password").
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def content_words(text: str) -> list[str]:
    """Stemmed word tokens of ``text`` without stopwords."""
    return [_stem(w) for w in words(text) if w not in STOPWORDS]


def count_tokens(text: str) -> int:
    """A deterministic token count: words and punctuation marks."""
    return len(_TOKEN.findall(text))


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into stripped, non-empty sentences."""
    return [s.strip() for s in _SENTENCE_END.split(text) if s and s.strip()]
