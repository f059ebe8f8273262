"""Detect, mask or pseudonymize PII in queries, documents, answers, logs and spans.

``PIIAnonymizer`` finds PII with validated rules (no model download, no
network) and replaces it; pseudonyms are keyed HMACs, stable across documents
and processes, and restorable through the ``Vault``. ``PIIQueryEngine``
pseudonymizes queries and restores answers (streams too); ``PIINodePostprocessor``
and ``PIITransform`` plug the same anonymizer into retrieval and ingestion;
``Recognizer`` is the strategy to add your own entity types.
"""

from ragprod.pii._anonymizer import PIIAnonymizer
from ragprod.pii._engine import PIIQueryEngine
from ragprod.pii._entity import AnonymizedText, Entity
from ragprod.pii._llama import PIINodePostprocessor, PIITransform
from ragprod.pii._recognizer import Recognizer
from ragprod.pii._vault import Vault

__all__ = [
    "AnonymizedText",
    "Entity",
    "PIIAnonymizer",
    "PIINodePostprocessor",
    "PIIQueryEngine",
    "PIITransform",
    "Recognizer",
    "Vault",
]
