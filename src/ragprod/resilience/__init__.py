"""Failure isolation for the upstreams of a RAG application.

LLM and embedding APIs time out, rate-limit and go down. This package puts
each call behind, outermost first: a :class:`RateLimiter` (token bucket, local
or shared through Redis), a :class:`Bulkhead` (bounded concurrency), a
:class:`CircuitBreaker` (resilience4j semantics; shareable across processes
with :class:`RedisBreakerStore`), a :class:`RetryPolicy` (tenacity, with a
fast path) and a :class:`Timeout`, bundled by :class:`Resilience` with an
optional fallback answer.

Use it on a query engine (:class:`ResilientQueryEngine`, or
``ragprod.harden(..., resilience=Resilience())``), an LLM
(:class:`ResilientLLM`), an embedding model (:class:`ResilientEmbedding`) or
any function (:func:`resilient`). Refusals raise subclasses of
``ragprod.errors.UpstreamUnavailableError``: ``CircuitOpenError``,
``RateLimitedError``, ``BulkheadFullError``, ``UpstreamTimeoutError``.

Example:
    >>> from ragprod.resilience import Resilience, ResilientQueryEngine
    >>> from ragprod.testing import FaultyQueryEngine
    >>> engine = ResilientQueryEngine(FaultyQueryEngine(), Resilience())
    >>> str(engine.query("hello"))
    'ok'
"""

from ragprod.resilience._breaker import BreakerState, CircuitBreaker
from ragprod.resilience._fallback import LastGoodAnswer
from ragprod.resilience._limits import Bulkhead, Timeout
from ragprod.resilience._predicates import RETRYABLE, ErrorPredicate, on, retry_after_of, when
from ragprod.resilience._ratelimit import RateLimiter
from ragprod.resilience._resilience import FALLBACK_ON, Resilience, ResilienceStep
from ragprod.resilience._retry import RetryPolicy
from ragprod.resilience._store import RedisBreakerStore
from ragprod.resilience._wrappers import (
    ResilientEmbedding,
    ResilientLLM,
    ResilientQueryEngine,
    resilient,
)

__all__ = [
    "BreakerState",
    "Bulkhead",
    "CircuitBreaker",
    "ErrorPredicate",
    "FALLBACK_ON",
    "LastGoodAnswer",
    "RETRYABLE",
    "RateLimiter",
    "RedisBreakerStore",
    "Resilience",
    "ResilienceStep",
    "ResilientEmbedding",
    "ResilientLLM",
    "ResilientQueryEngine",
    "RetryPolicy",
    "Timeout",
    "on",
    "resilient",
    "retry_after_of",
    "when",
]
