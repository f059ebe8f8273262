"""The value types of the PII package: ``Entity`` and ``AnonymizedText``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["AnonymizedText", "Entity"]


@dataclass(frozen=True, slots=True, order=True)
class Entity:
    """One piece of PII found in a text.

    Attributes:
        start: offset of the first character (``text[start:end]`` is the value).
        end: offset one past the last character.
        type: the entity type, e.g. ``"EMAIL_ADDRESS"`` (Presidio's names).
        score: confidence in ``[0, 1]``, after context boosts.
        recognizer: the name of the recognizer that found it.

    Its ``repr`` shows offsets and type only, never the value, so an entity can
    be logged safely.

    Example:
        >>> text = "mail ana@example.org"
        >>> e = Entity(5, 20, "EMAIL_ADDRESS", 0.9, "email")
        >>> text[e.start:e.end]
        'ana@example.org'
    """

    start: int
    end: int
    type: str
    score: float = 1.0
    recognizer: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end:
            raise ValueError("an entity needs 0 <= start < end")

    def __len__(self) -> int:
        return self.end - self.start

    def overlaps(self, other: Entity) -> bool:
        """Whether the two spans share at least one character."""
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class AnonymizedText:
    """The result of :meth:`PIIAnonymizer.anonymize`.

    Attributes:
        text: the anonymized text.
        entities: what was found, with offsets into the *original* text.
        mapping: pseudonym -> original value for every pseudonym in ``text``
            (empty for the irreversible operators). Pass it to
            :meth:`PIIAnonymizer.deanonymize` to restore the original.

    ``str()`` gives the anonymized text; the ``repr`` never shows the mapping's
    values.
    """

    text: str
    entities: tuple[Entity, ...] = ()
    mapping: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        types = sorted({e.type for e in self.entities})
        return (
            f"AnonymizedText(len={len(self.text)}, entities={len(self.entities)}, "
            f"types={types}, pseudonyms={len(self.mapping)})"
        )
