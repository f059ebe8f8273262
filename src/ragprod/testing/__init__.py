"""Offline stand-ins and fakes for ragprod's tests and yours.

Everything here runs without network, model weights or API keys and is
deterministic across machines:

- :class:`FakeClock`: a clock (and sleep) that only moves when told to.
- :class:`HashEmbedding`: a ``BaseEmbedding`` that hashes words into vectors.
- :class:`ExtractiveLLM`: a ``CustomLLM`` that answers by quoting its context.
- :class:`FaultyQueryEngine`: a ``BaseQueryEngine`` with scripted latency,
  failures and streaming.

Example:
    >>> from llama_index.core import Document, VectorStoreIndex
    >>> from ragprod.testing import ExtractiveLLM, HashEmbedding
    >>> index = VectorStoreIndex.from_documents(
    ...     [Document(text="Refunds are paid within 5 days.")], embed_model=HashEmbedding()
    ... )
    >>> str(index.as_query_engine(llm=ExtractiveLLM()).query("When are refunds paid?"))
    'Refunds are paid within 5 days.'
"""

from ragprod.testing._capture import (
    SpanCapture,
    capture_logs,
    capture_metrics,
    capture_spans,
)
from ragprod.testing._clock import FakeClock
from ragprod.testing._embedding import HashEmbedding
from ragprod.testing._engines import FaultyQueryEngine
from ragprod.testing._llm import ExtractiveLLM
from ragprod.testing._mode import is_test_mode, set_test_mode, test_mode

__all__ = [
    "ExtractiveLLM",
    "FakeClock",
    "FaultyQueryEngine",
    "HashEmbedding",
    "SpanCapture",
    "capture_logs",
    "capture_metrics",
    "capture_spans",
    "is_test_mode",
    "set_test_mode",
    "test_mode",
]
