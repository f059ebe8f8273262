"""ragprod: production-hardening wrappers for LlamaIndex.

Each capability lives in its own subpackage (``ragprod.errors``,
``ragprod.testing``, ...) and its public names are re-exported here.
"""

from ragprod import errors, testing
from ragprod._harden import HardenedQueryEngine, harden
from ragprod._version import __version__
from ragprod.errors import (
    BulkheadFullError,
    CircuitOpenError,
    ConfigurationError,
    CryptoError,
    DecryptionError,
    KeyNotFoundError,
    QueryRejectedError,
    RagprodError,
    RateLimitedError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from ragprod.guard import REASONS, QueryGuard
from ragprod.metrics import DEFAULT_LATENCY_BUCKETS, RagMetrics

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigurationError",
    "CryptoError",
    "DEFAULT_LATENCY_BUCKETS",
    "DecryptionError",
    "HardenedQueryEngine",
    "KeyNotFoundError",
    "QueryGuard",
    "QueryRejectedError",
    "REASONS",
    "RagMetrics",
    "RagprodError",
    "RateLimitedError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "__version__",
    "errors",
    "harden",
    "testing",
]
