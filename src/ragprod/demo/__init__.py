"""The offline walkthrough behind ``ragprod demo``.

It builds a real ``VectorStoreIndex`` over a bundled corpus with
:class:`~ragprod.testing.HashEmbedding` and :class:`~ragprod.testing.ExtractiveLLM`
(no network, no API key) and runs one section per capability.
"""

from ragprod.demo._core import DemoContext, Section, load_corpus
from ragprod.demo._run import run_demo
from ragprod.demo._sections import DEMO_QUERIES, SECTIONS

__all__ = ["DEMO_QUERIES", "DemoContext", "SECTIONS", "Section", "load_corpus", "run_demo"]
