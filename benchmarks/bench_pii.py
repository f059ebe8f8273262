"""PII detection: ragprod's rule engine vs Presidio pattern-only, same text, same run.

Accuracy rows (``suite.record``) hold scores, not microseconds: the "µs" columns
carry the metric named in the row (F1, a rate) for Presidio (baseline) and
ragprod (candidate). The speed row (``suite.compare``) times one 2 KB chunk:
Presidio ``analyze`` vs ragprod ``anonymize`` (detect *and* pseudonymize).

Presidio runs offline with the recipe from issue 6: ``NoOpNlpEngine`` and
tldextract told to use its bundled suffix list instead of fetching one.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from _harness import Result, Stat, Suite

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.pii import corpus  # noqa: E402

from ragprod.pii import PIIAnonymizer  # noqa: E402

Predict = Callable[[str], list[tuple[int, int, str]]]
CHUNK = 2048


def presidio() -> Predict | None:
    """Presidio's pattern recognizers, offline; ``None`` if it is not installed."""
    try:
        import tldextract
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NoOpNlpEngine
    except ImportError:
        return None
    # the e-mail validator calls tldextract, which would download the suffix list
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # type: ignore[assignment]
    engine = AnalyzerEngine(
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "no_op"}]),
        supported_languages=["en"],
    )

    def predict(text: str) -> list[tuple[int, int, str]]:
        return [(r.start, r.end, r.entity_type) for r in engine.analyze(text, language="en")]

    return predict


def _stat(value: float) -> Stat:
    return Stat(wall_us=value, cpu_us=value, spread=0.0)


def _row(suite: Suite, name: str, base: float, cand: float, label: str, note: str) -> None:
    suite.record(Result(suite.area, name, label, "ragprod", _stat(base), _stat(cand), note=note))


def _throughput(predict: Callable[[str], object], chunks: list[str], seconds: float) -> float:
    """MB/s over the chunks, repeated for at least ``seconds`` of CPU time."""
    size = sum(len(c.encode()) for c in chunks)
    done, start = 0, time.process_time()
    while True:
        for c in chunks:
            predict(c)
        done += size
        elapsed = time.process_time() - start
        if elapsed >= seconds:
            return done / elapsed / 1e6


def run(suite: Suite) -> None:
    docs = corpus.load()
    text = "".join(str(d["text"]) for d in docs)
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)]
    pii = PIIAnonymizer(key=b"bench-key-0123456789abcdef")

    def ours(t: str) -> list[tuple[int, int, str]]:
        return [(e.start, e.end, e.type) for e in pii.analyze(t)]

    theirs = presidio()
    label = "Presidio pattern-only" if theirs is not None else "(Presidio not installed)"
    if theirs is None:

        def theirs(t: str) -> list[tuple[int, int, str]]:
            return []

    mine, base = corpus.score(docs, ours), corpus.score(docs, theirs)
    for kind in corpus.TYPES:
        b, c = base.prf([kind]), mine.prf([kind])
        _row(suite, f"F1 {kind}", b[2], c[2], label,
             f"P/R ragprod {c[0]:.3f}/{c[1]:.3f}, baseline {b[0]:.3f}/{b[1]:.3f}")  # fmt: skip
    structured = [t for t in corpus.TYPES if t != "PERSON"]
    for name, types in (
        ("typed F1, all 10 types", corpus.TYPES),
        ("typed F1, structured", structured),
    ):
        b, c = base.prf(types), mine.prf(types)
        _row(suite, name, b[2], c[2], label,
             f"precision {c[0]:.3f} vs {b[0]:.3f}, recall {c[1]:.3f} vs {b[1]:.3f}")  # fmt: skip
    _row(suite, "hard negatives flagged (rate)", base.negative_rate, mine.negative_rate, label,
         f"{mine.negatives_flagged}/{mine.negatives} vs {base.negatives_flagged}/{base.negatives}; "
         "lower is better")  # fmt: skip
    _row(suite, "PII spans fully masked (rate)", base.masked_rate, mine.masked_rate, label,
         f"PII chars left unmasked: {mine.pii_chars_unmasked / mine.pii_chars:.1%} vs "
         f"{base.pii_chars_unmasked / base.pii_chars:.1%}")  # fmt: skip

    seconds = 0.2 if suite.quick else 2.0
    sample = chunks if not suite.quick else chunks[:4]
    ours_mbs = _throughput(pii.anonymize, sample, seconds)
    base_mbs = _throughput(theirs, sample if not suite.quick else sample[:1], seconds)
    _row(suite, "throughput MB/s (CPU)", base_mbs, ours_mbs, label,
         f"{len(sample)} chunks of 2 KB; detect + pseudonymize; higher is better")  # fmt: skip

    batch = chunks[:: max(1, len(chunks) // 8)][:8]  # 8 chunks spread over the corpus
    suite.compare(
        "8 chunks of 2 KB: detect (+ pseudonymize)",
        lambda: [theirs(c) for c in batch],
        lambda: [pii.anonymize(c) for c in batch],
        baseline_label=f"{label} analyze",
        rounds=5 if not suite.quick else 3,
        note="labeled corpus (en_US/en_GB/de_DE/fr_FR); ratio < 1 means ragprod is faster",
    )
