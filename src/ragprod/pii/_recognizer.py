"""The recognizer strategy: small objects that find one kind of PII, composed with ``|``."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from ragprod.pii._entity import Entity

__all__ = ["PatternRecognizer", "Recognizer", "RecognizerSet", "context_pattern"]

Validator = Callable[[str], bool]


_RUN = re.compile(r"\d[\d \-./()\u00a0]{5,}\d")
_last_runs: tuple[str, list[tuple[int, int]]] = ("", [])


def digit_runs(text: str) -> list[tuple[int, int]]:
    """Spans of digit runs (digits joined by spaces, dashes, dots, slashes, brackets).

    Every number-shaped recognizer looks only inside these, which is much cheaper
    than trying a complex pattern at every digit. The last text's runs are
    memoized, so recognizers run one after another on a text share one scan.
    """
    global _last_runs
    cached_text, cached = _last_runs
    if cached_text is text:
        return cached
    runs = [m.span() for m in _RUN.finditer(text)]
    _last_runs = (text, runs)
    return runs


def trie_alternation(words: Iterable[str]) -> str:
    """A regex matching any of ``words``, factored by common prefixes.

    Python's ``re`` tries the branches of ``a|b|c`` one by one at every
    position; a prefix tree makes a failing position cost one character test.

    >>> trie_alternation(["tel", "telefon", "fax"])
    '(?:fax|tel(?:efon)?)'
    """
    trie: dict[str, Any] = {}
    for word in words:
        if not word:
            continue
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        end = "" in node
        branches = []
        for ch in sorted(k for k in node if k):
            child = node[ch]
            # collapse single-child chains into one literal run
            run = re.escape(ch)
            while len(child) == 1 and "" not in child:
                (nxt,) = child
                run += re.escape(nxt)
                child = child[nxt]
            rest = build(child) if child else ""
            branches.append(run + rest)
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 and not end else "(?:" + "|".join(branches) + ")"
        return body + ("?" if end else "")

    body = build(trie)
    return f"(?:{body})" if body else "(?!)"


def context_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """A case-insensitive pattern matching any of ``words`` as whole words."""
    lowered = {w.lower() for w in words if w}
    if not lowered:
        return None
    return re.compile(r"(?<!\w)" + trie_alternation(lowered) + r"(?!\w)", re.IGNORECASE)


class Recognizer(ABC):
    """Finds one or more types of PII in a text.

    Subclass it and implement :meth:`find` (yield :class:`Entity` objects with
    offsets into the text), or build one from a regular expression with
    :meth:`from_pattern`. Recognizers compose with ``|``: ``a | b`` finds what
    either finds; the anonymizer resolves overlaps (higher score, then longer
    span, wins).

    Attributes:
        name: shown in :attr:`Entity.recognizer` and in ``repr``.
        types: the entity types this recognizer can produce.

    Example:
        >>> import re
        >>> class Employee(Recognizer):
        ...     name, types = "employee", frozenset({"EMPLOYEE_ID"})
        ...     def find(self, text):
        ...         for m in re.finditer(r"\\bEMP-\\d{6}\\b", text):
        ...             yield Entity(m.start(), m.end(), "EMPLOYEE_ID", 0.9, self.name)
        >>> [text[e.start:e.end] for text in ["badge EMP-004211"] for e in Employee().find(text)]
        ['EMP-004211']
    """

    name: str = "recognizer"
    types: frozenset[str] = frozenset()

    @abstractmethod
    def find(self, text: str) -> Iterable[Entity]:
        """Yield the entities found in ``text`` (overlaps allowed)."""

    def __or__(self, other: Recognizer) -> RecognizerSet:
        if not isinstance(other, Recognizer):
            return NotImplemented
        return RecognizerSet([self, other])

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {sorted(self.types)}>"

    @staticmethod
    def from_pattern(
        type: str,
        pattern: str | re.Pattern[str],
        *,
        validator: Validator | None = None,
        score: float = 0.6,
        context: Sequence[str] = (),
        negative_context: Sequence[str] = (),
        group: int | str = 0,
        name: str | None = None,
    ) -> PatternRecognizer:
        """A recognizer that reports each regex match that passes ``validator``.

        Args:
            type: the entity type to report, e.g. ``"EMPLOYEE_ID"``.
            pattern: a regular expression (string or compiled).
            validator: called with the matched value; ``False`` drops the match.
            score: the base score; the anonymizer keeps entities scoring >= 0.5.
            context: words that, within 40 characters before the match, add 0.35.
            negative_context: words that, within 24 characters before on the same
                line, subtract 0.4.
            group: which regex group is the value (the whole match by default).
            name: the recognizer's name (defaults to the lower-cased type).

        Example:
            >>> r = Recognizer.from_pattern("EMPLOYEE_ID", r"\\bEMP-\\d{6}\\b", score=0.9)
            >>> [(e.start, e.end, e.type) for e in r.find("badge EMP-004211")]
            [(6, 16, 'EMPLOYEE_ID')]
        """
        return PatternRecognizer(
            type,
            pattern,
            validator=validator,
            score=score,
            context=context,
            negative_context=negative_context,
            group=group,
            name=name,
        )

    @staticmethod
    def from_spacy(
        nlp: Any, *, labels: Mapping[str, str] | None = None, score: float = 0.8
    ) -> Recognizer:
        """A recognizer backed by a spaCy pipeline (an optional NER backend).

        Args:
            nlp: a loaded ``spacy.Language`` or the name of an installed model
                (nothing is downloaded).
            labels: spaCy label -> entity type (default: ``PERSON``/``PER`` -> ``PERSON``).
            score: the score given to every entity it finds.

        Raises:
            ConfigurationError: spaCy or the named model is not installed.

        Example:
            >>> ner = Recognizer.from_spacy("en_core_web_sm")  # doctest: +SKIP
            >>> pii = PIIAnonymizer(recognizers=[ner])  # doctest: +SKIP
        """
        kwargs: dict[str, Any] = {"score": score}
        if labels is not None:
            kwargs["labels"] = labels
        return _from_spacy(nlp, **kwargs)


def _from_spacy(nlp: Any, **kwargs: Any) -> Recognizer:
    from ragprod.pii._ner import SpacyRecognizer

    return SpacyRecognizer(nlp, **kwargs)


class RecognizerSet(Recognizer):
    """Several recognizers run as one (what ``a | b`` builds)."""

    def __init__(self, recognizers: Iterable[Recognizer]) -> None:
        flat: list[Recognizer] = []
        for r in recognizers:
            flat.extend(r.recognizers if isinstance(r, RecognizerSet) else [r])
        self.recognizers: tuple[Recognizer, ...] = tuple(flat)
        self.types = frozenset().union(*(r.types for r in flat)) if flat else frozenset()
        self.name = "|".join(r.name for r in flat)

    def find(self, text: str) -> Iterator[Entity]:
        """Yield what each member finds, member by member."""
        for recognizer in self.recognizers:
            yield from recognizer.find(text)

    def __len__(self) -> int:
        return len(self.recognizers)


_WORD = re.compile(r"[^\W\d_]{3,}")
_NUMBER_WORDS = frozenset(("number", "num", "nummer", "numéro", "numero"))


def _labels_value(negative: re.Pattern[str], before: str) -> bool:
    """Whether a negative word labels the value right after it ("Order #", "Part no.").

    It must be on the same line, close (24 characters), with no other word in between
    ("order #123; card 4111..." does not make the card an order number).
    """
    near = before[-24:].rpartition("\n")[2]
    matches = list(negative.finditer(near))
    if not matches:
        return False
    gap = near[matches[-1].end() :]
    return all(w.lower() in _NUMBER_WORDS for w in _WORD.findall(gap))


class PatternRecognizer(Recognizer):
    """A regex, an optional validator and context words (see :meth:`Recognizer.from_pattern`)."""

    window = 40

    def __init__(
        self,
        type: str,
        pattern: str | re.Pattern[str],
        *,
        validator: Validator | None = None,
        score: float = 0.6,
        context: Sequence[str] = (),
        negative_context: Sequence[str] = (),
        group: int | str | tuple[int | str, ...] = 0,
        name: str | None = None,
        boost: float = 0.35,
        penalty: float = 0.4,
        not_after: str = "",
        requires: Sequence[str] = (),
        in_digit_runs: bool = False,
        min_length: int = 0,
    ) -> None:
        self.type = type
        self.types = frozenset({type})
        self.name = name or type.lower()
        self.pattern = re.compile(pattern) if isinstance(pattern, str) else pattern
        self.validator = validator
        self.score = score
        self.groups = group if isinstance(group, tuple) else (group,)
        self.boost, self.penalty = boost, penalty
        self._context = context_pattern(context)
        self._negative = context_pattern(negative_context)
        self.not_after = not_after
        self.requires = tuple(r.lower() for r in requires)
        self.in_digit_runs = in_digit_runs
        self.min_length = min_length

    def find(self, text: str) -> Iterator[Entity]:
        """Yield each validated match, its score adjusted by the context before it."""
        if self.requires:
            lowered = text.lower()
            if not any(r in lowered for r in self.requires):
                return
        if not self.in_digit_runs:
            yield from self._scan(text, 0, len(text))
            return
        n = len(text)
        shortest = self.min_length
        for start, end in digit_runs(text):
            if end - start < shortest:
                continue
            after = text[end] if end < n else " "
            if not (after.isalnum() or after == "_"):  # a run glued to a word is no number
                yield from self._scan(text, start, end)

    def _scan(self, text: str, pos: int, endpos: int) -> Iterator[Entity]:
        # A rejected match restarts one character later, not after its end: a greedy
        # candidate that fails validation must not hide a valid one inside it.
        search, not_after, validator = self.pattern.search, self.not_after, self.validator
        while (m := search(text, pos, endpos)) is not None:
            pos = m.start() + 1 if m.end() > m.start() else m.end() + 1
            for group in self.groups:
                start, end = m.span(group)
                if start >= 0:
                    break
            if start < 0 or start == end:
                continue
            if not_after and start and (text[start - 1].isalnum() or text[start - 1] in not_after):
                continue
            if validator is not None and not validator(text[start:end]):
                continue
            yield Entity(start, end, self.type, self.adjust(text, start, self.score), self.name)
            pos = max(pos, m.end())

    def adjust(self, text: str, start: int, score: float) -> float:
        """``score`` plus the context boost, minus the negative-context penalty."""
        if self._context is None and self._negative is None:
            return score
        before = text[max(0, start - self.window) : start]
        if self._context is not None and self._context.search(before):
            score += self.boost
        if self._negative is not None and _labels_value(self._negative, before):
            score -= self.penalty
        return max(0.0, min(1.0, score))
