"""Scoring a PII detector on the labeled corpus: typed F1, hard negatives, masking."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

TYPES = (
    "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
    "SECRET", "URL_CREDENTIALS", "DATE_OF_BIRTH", "PERSON",
)  # fmt: skip


@dataclass
class Score:
    """Typed precision/recall/F1 per type and the hard-negative and masking rates."""

    tp: dict[str, int] = field(default_factory=dict)
    fp: dict[str, int] = field(default_factory=dict)
    fn: dict[str, int] = field(default_factory=dict)
    negatives: int = 0
    negatives_flagged: int = 0
    spans: int = 0
    spans_fully_masked: int = 0
    pii_chars: int = 0
    pii_chars_unmasked: int = 0

    def prf(self, types: Iterable[str] | None = None) -> tuple[float, float, float]:
        keys = (
            list(types) if types is not None else sorted(set(self.tp) | set(self.fp) | set(self.fn))
        )
        tp = sum(self.tp.get(t, 0) for t in keys)
        fp = sum(self.fp.get(t, 0) for t in keys)
        fn = sum(self.fn.get(t, 0) for t in keys)
        p = tp / (tp + fp) if tp + fp else 1.0
        r = tp / (tp + fn) if tp + fn else 1.0
        return p, r, (2 * p * r / (p + r) if p + r else 0.0)

    @property
    def negative_rate(self) -> float:
        return self.negatives_flagged / self.negatives if self.negatives else 0.0

    @property
    def masked_rate(self) -> float:
        return self.spans_fully_masked / self.spans if self.spans else 1.0


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def score(docs: Sequence[dict[str, object]], predict: Callable[[str], list[tuple[int, int, str]]],
          types: Sequence[str] = TYPES) -> Score:  # fmt: skip
    """Score ``predict`` (text -> [(start, end, type)]) on ``docs``.

    A prediction is a true positive when its type equals a gold span's and the
    spans overlap by at least half of the longer one; predictions of types
    outside ``types`` do not count in F1 but do count when they touch a hard
    negative.
    """
    s = Score()
    for doc in docs:
        text = str(doc["text"])
        gold = [tuple(x) for x in doc["spans"]]  # type: ignore[attr-defined]
        preds = predict(text)
        matched: set[int] = set()
        for g in gold:
            g_span = (int(g[0]), int(g[1]))
            hit = None
            for i, p in enumerate(preds):
                if i in matched or p[2] != g[2]:
                    continue
                if _overlap(g_span, (p[0], p[1])) * 2 >= max(g_span[1] - g_span[0], p[1] - p[0]):
                    hit = i
                    break
            if hit is None:
                s.fn[str(g[2])] = s.fn.get(str(g[2]), 0) + 1
            else:
                matched.add(hit)
                s.tp[str(g[2])] = s.tp.get(str(g[2]), 0) + 1
            covered = sum(_overlap(g_span, (p[0], p[1])) for p in preds)
            length = g_span[1] - g_span[0]
            s.spans += 1
            s.pii_chars += length
            s.pii_chars_unmasked += max(0, length - covered)
            s.spans_fully_masked += covered >= length
        for i, p in enumerate(preds):
            if i not in matched and p[2] in types:
                s.fp[p[2]] = s.fp.get(p[2], 0) + 1
        for n in doc["negatives"]:  # type: ignore[attr-defined]
            s.negatives += 1
            s.negatives_flagged += any(_overlap((n[0], n[1]), (p[0], p[1])) for p in preds)
    return s
