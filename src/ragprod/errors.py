"""Every error ragprod raises, in one hierarchy.

Catch :class:`RagprodError` to handle anything ragprod decided to refuse; catch a
leaf to handle one condition. Errors carry structured fields (``reason``,
``retry_after``, ``key_id`` ...) so callers never parse messages, and their
texts never contain user content, PII or secrets: a rejected query is described
by its length and reason code, never quoted.

Backend errors (redis, cryptography, tenacity) are translated at the boundary
into the most specific class below and chained with ``raise ... from exc``.
Failures of an *upstream you called* (your LLM raising ``openai.APIError``)
pass through unchanged unless a ragprod layer decided to refuse the call.

::

    RagprodError
    ├── ConfigurationError          invalid settings; lists every finding at once
    ├── QueryRejectedError          the guard refused a query (``reason`` code)
    ├── UpstreamUnavailableError    the call was not made or did not finish
    │   ├── CircuitOpenError        the breaker is open (``retry_after``)
    │   ├── RateLimitedError        the rate limit is exhausted (``retry_after``)
    │   ├── BulkheadFullError       too many calls in flight
    │   └── UpstreamTimeoutError    the call ran past its deadline
    └── CryptoError
        ├── DecryptionError         a ciphertext failed authentication or parsing
        └── KeyNotFoundError        no key with the record's key id
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "BulkheadFullError",
    "CircuitOpenError",
    "ConfigurationError",
    "CryptoError",
    "DecryptionError",
    "KeyNotFoundError",
    "QueryRejectedError",
    "RagprodError",
    "RateLimitedError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
]


class RagprodError(Exception):
    """Root of every error ragprod raises.

    Subclasses build their message from their structured fields only, so
    ``str(err)`` is always safe to log.
    """


class ConfigurationError(RagprodError):
    """The configuration is invalid; ``problems`` lists every problem found.

    Args:
        problems: one short, content-free line per problem (e.g. a finding code
            and what to fix). At least one.
    """

    def __init__(self, problems: Sequence[str] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        if not self.problems:
            raise ValueError("ConfigurationError needs at least one problem")
        if len(self.problems) == 1:
            message = f"invalid configuration: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            message = f"invalid configuration ({len(self.problems)} problems):\n{lines}"
        super().__init__(message)


class QueryRejectedError(RagprodError):
    """A query was refused before it reached any upstream.

    Args:
        reason: a stable code such as ``"empty"``, ``"too_long"``,
            ``"not_a_string"``, ``"control_characters"`` or ``"invalid_unicode"``.
        length: the query's length in characters, when it is a string.
        limit: the limit it broke, when there is one.

    The query itself is never part of the message.
    """

    def __init__(self, reason: str, *, length: int | None = None, limit: int | None = None) -> None:
        self.reason = reason
        self.length = length
        self.limit = limit
        detail = []
        if length is not None:
            detail.append(f"length={length}")
        if limit is not None:
            detail.append(f"limit={limit}")
        suffix = f" ({', '.join(detail)})" if detail else ""
        super().__init__(f"query rejected: {reason}{suffix}")


class UpstreamUnavailableError(RagprodError):
    """A protected upstream call was not made, or did not finish.

    Args:
        name: the name of the protected resource (e.g. ``"llm"``).
        retry_after: seconds after which trying again may succeed, if known.
    """

    _what = "upstream unavailable"

    def __init__(self, name: str, *, retry_after: float | None = None) -> None:
        self.name = name
        self.retry_after = retry_after
        hint = f"; retry after {retry_after:.3f}s" if retry_after is not None else ""
        super().__init__(f"{self._what}: {name}{hint}")


class CircuitOpenError(UpstreamUnavailableError):
    """The circuit breaker named ``name`` is open and refused the call."""

    _what = "circuit open"


class RateLimitedError(UpstreamUnavailableError):
    """The rate limiter named ``name`` has no permit left."""

    _what = "rate limited"


class BulkheadFullError(UpstreamUnavailableError):
    """The bulkhead named ``name`` has no free slot."""

    _what = "bulkhead full"


class UpstreamTimeoutError(UpstreamUnavailableError):
    """The call to ``name`` did not finish within ``timeout`` seconds.

    Args:
        name: the protected resource.
        timeout: the deadline, in seconds, that was exceeded.
    """

    _what = "upstream timed out"

    def __init__(self, name: str, *, timeout: float, retry_after: float | None = None) -> None:
        self.timeout = timeout
        self._what = f"upstream timed out after {timeout:.3f}s"
        super().__init__(name, retry_after=retry_after)


class CryptoError(RagprodError):
    """Base of the errors raised by ``ragprod.crypto``."""


class DecryptionError(CryptoError):
    """A stored record could not be decrypted.

    Args:
        reason: a stable code: ``"authentication_failed"`` (wrong key, tampered
            data or wrong associated data), ``"malformed"`` (not a ragprod
            envelope) or ``"unsupported_version"``.
        key_id: the key id named by the record, if it could be read.
    """

    def __init__(self, reason: str, *, key_id: str | None = None) -> None:
        self.reason = reason
        self.key_id = key_id
        where = f" (key id {key_id})" if key_id is not None else ""
        super().__init__(f"decryption failed: {reason}{where}")


class KeyNotFoundError(CryptoError):
    """The keyring holds no key with id ``key_id`` (it may have been shredded)."""

    def __init__(self, key_id: str) -> None:
        self.key_id = key_id
        super().__init__(f"no key with id {key_id!r} in the keyring")
