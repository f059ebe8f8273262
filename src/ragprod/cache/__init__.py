"""Multi-level caching for LlamaIndex: in-process L1, Redis L2, single-flight, safe values.

``TieredCache`` puts a thread-safe in-process :class:`MemoryCache` in front of
a shared :class:`RedisCache`. The drop-in wrappers :class:`CachedQueryEngine`,
:class:`CachedRetriever` and :class:`CachedEmbedding` key each value by
everything that changes it (namespace generation, tenant, the engine's or
model's fingerprint, the hashed query), compute concurrent identical misses
once, and never pickle: responses are versioned JSON, vectors packed float32,
and a corrupt value is a miss. A dead or hung Redis is bypassed within its
socket timeout and retried after a cool-down.

Example:
    >>> from ragprod.cache import CachedQueryEngine, TieredCache
    >>> from ragprod.testing import FaultyQueryEngine
    >>> engine = CachedQueryEngine(FaultyQueryEngine(answer="hi"), TieredCache.memory())
    >>> str(engine.query("hello"))
    'hi'
"""

from ragprod.cache._embedding import CachedEmbedding
from ragprod.cache._keys import cache_key, fingerprint
from ragprod.cache._memory import MemoryCache
from ragprod.cache._redis import RedisCache
from ragprod.cache._serde import MISS
from ragprod.cache._step import CacheStep
from ragprod.cache._tiered import TieredCache
from ragprod.cache._wrappers import CachedQueryEngine, CachedRetriever, invalidate_on_change

__all__ = [
    "CacheStep",
    "CachedEmbedding",
    "CachedQueryEngine",
    "CachedRetriever",
    "MISS",
    "MemoryCache",
    "RedisCache",
    "TieredCache",
    "cache_key",
    "fingerprint",
    "invalidate_on_change",
]
