"""An optional NER backend: any spaCy pipeline as a :class:`Recognizer` (no model bundled)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ragprod.errors import ConfigurationError
from ragprod.pii._entity import Entity
from ragprod.pii._recognizer import Recognizer

__all__ = ["DEFAULT_LABELS", "SpacyRecognizer"]

#: spaCy entity labels (OntoNotes and WikiNER styles) mapped to ragprod types.
DEFAULT_LABELS: Mapping[str, str] = {"PERSON": "PERSON", "PER": "PERSON"}


class SpacyRecognizer(Recognizer):
    """Entities from a spaCy pipeline, e.g. ``de_core_news_sm`` for German names.

    Built through :meth:`Recognizer.from_spacy`. The pipeline is used as is;
    nothing is downloaded. Combine it with the rule-based person recognizer
    (the anonymizer resolves overlaps).
    """

    def __init__(
        self, nlp: Any, *, labels: Mapping[str, str] = DEFAULT_LABELS, score: float = 0.8
    ) -> None:
        if isinstance(nlp, str):
            try:
                import spacy
            except ImportError as exc:
                raise ConfigurationError("pii: spaCy is not installed") from exc
            try:
                nlp = spacy.load(nlp)
            except OSError as exc:
                raise ConfigurationError("pii: the spaCy model is not installed") from exc
        self.nlp = nlp
        self.labels = dict(labels)
        self.types = frozenset(self.labels.values())
        self.score = score
        self.name = "spacy"

    def find(self, text: str) -> Iterator[Entity]:
        """Yield each entity whose label is mapped."""
        if not text.strip():
            return
        for ent in self.nlp(text).ents:
            kind = self.labels.get(ent.label_)
            if kind is not None and ent.end_char > ent.start_char:
                yield Entity(ent.start_char, ent.end_char, kind, self.score, self.name)
