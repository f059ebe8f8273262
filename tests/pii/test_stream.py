"""Restoring pseudonyms in streamed answers: never half a pseudonym, never a leak."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ragprod.pii import PIIAnonymizer

KEY = b"stream-key-0123456789"
PII = PIIAnonymizer(key=KEY)
SOURCE = "Dear Sarah, mail ana.lima@example.org or call +44 20 7946 0958 (Mr. John Smith)."
ANON = PII.anonymize(SOURCE)
ANSWER = f"Answer for {ANON.text} -- done; PERSON_ is not a pseudonym, nor email_12."


def restore_in_chunks(chunks: list[str]) -> tuple[str, list[str]]:
    r = PII.restorer(ANON.mapping)
    outs = [r.feed(c) for c in chunks] + [r.flush()]
    return "".join(outs), outs


def test_every_single_split_point() -> None:
    """For every split of the answer into two chunks, the output equals the full restore."""
    expected = PII.deanonymize(ANSWER, ANON.mapping)
    assert "ana.lima@example.org" in expected
    assert "John Smith" in expected
    for i in range(len(ANSWER) + 1):
        text, outs = restore_in_chunks([ANSWER[:i], ANSWER[i:]])
        assert text == expected
        for out in outs:  # no emitted piece holds part of a pseudonym
            for alias in ANON.mapping:
                for k in range(4, len(alias)):
                    assert not (out.endswith(alias[:k]) and not out.endswith(alias))


def test_character_by_character() -> None:
    """A stream of one-character chunks restores exactly."""
    text, _ = restore_in_chunks(list(ANSWER))
    assert text == PII.deanonymize(ANSWER, ANON.mapping)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=len(ANSWER)), max_size=12))
def test_any_chunking_restores_like_the_whole(cuts: list[int]) -> None:
    """However the answer is chunked, the concatenated output is the full restore."""
    points = sorted(set(cuts))
    chunks = [ANSWER[a:b] for a, b in zip([0, *points], [*points, len(ANSWER)], strict=True)]
    assert restore_in_chunks(chunks)[0] == PII.deanonymize(ANSWER, ANON.mapping)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80), st.lists(st.integers(0, 80), max_size=6))
def test_arbitrary_text_passes_through(text: str, cuts: list[int]) -> None:
    """Text without pseudonyms comes out unchanged whatever the chunking."""
    points = sorted({c for c in cuts if c <= len(text)})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert restore_in_chunks(chunks)[0] == PII.deanonymize(text, ANON.mapping)
