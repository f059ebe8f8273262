"""The demo's sections, in order. Each capability adds one section to ``SECTIONS``."""

from __future__ import annotations

from ragprod.demo import _pii, _preflight
from ragprod.demo._basics import DEMO_QUERIES, ask, build_index
from ragprod.demo._core import Section
from ragprod.demo._crypto import encryption
from ragprod.demo._hardened import cache_section, harden_section
from ragprod.resilience import _demo as resilience_demo

__all__ = ["DEMO_QUERIES", "SECTIONS"]

SECTIONS: list[Section] = [
    Section("index", "Build a VectorStoreIndex over the bundled corpus", build_index),
    Section("queries", "Ask the plain LlamaIndex engine", ask),
    Section("harden", "Harden it: five layers, one call", harden_section),
    Section("cache", "A traced miss, then the same query from the cache", cache_section),
    Section("pii", _pii.TITLE, _pii.pii_section),
    Section("resilience", resilience_demo.TITLE, resilience_demo.outage_section),
    Section("encryption", "The docstore, index store and vectors encrypted on disk", encryption),
    Section("preflight", _preflight.TITLE, _preflight.preflight_section),
]
