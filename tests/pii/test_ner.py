"""The optional NER backend: a spaCy pipeline as a recognizer (no model download)."""

from __future__ import annotations

import pytest

from ragprod.errors import ConfigurationError
from ragprod.pii import PIIAnonymizer, Recognizer

spacy = pytest.importorskip("spacy")


def test_spacy_pipeline_finds_names_the_rules_miss() -> None:
    """A spaCy pipeline (here a blank one with an entity ruler) adds PERSON entities."""
    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "PERSON", "pattern": [{"LOWER": "ada"}, {"LOWER": "lovelace"}]}])
    ner = Recognizer.from_spacy(nlp)
    pii = PIIAnonymizer(key=b"ner-key-0123456789", recognizers=[ner])
    text = "the notes of Ada Lovelace were read"
    assert [(e.type, e.recognizer, text[e.start : e.end]) for e in pii.analyze(text)] == [
        ("PERSON", "spacy", "Ada Lovelace")
    ]
    out = pii.anonymize(text)
    assert pii.deanonymize(out.text) == text


def test_label_mapping_and_missing_model() -> None:
    """Labels map to types; a model that is not installed is a ConfigurationError."""
    nlp = spacy.blank("en")
    nlp.add_pipe("entity_ruler").add_patterns([{"label": "ORG", "pattern": "Initech"}])
    ner = Recognizer.from_spacy(nlp, labels={"ORG": "ORGANIZATION"}, score=0.9)
    assert ner.types == {"ORGANIZATION"}
    assert [e.type for e in ner.find("Initech called")] == ["ORGANIZATION"]
    with pytest.raises(ConfigurationError):
        Recognizer.from_spacy("xx_no_such_model_sm")
