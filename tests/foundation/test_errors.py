"""ragprod.errors: one hierarchy, structured fields, content-free messages."""

from __future__ import annotations

import inspect

import pytest

from ragprod import errors
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


def test_every_error_derives_from_the_root() -> None:
    """Every exception class in ragprod.errors is a RagprodError."""
    classes = [v for v in vars(errors).values() if inspect.isclass(v) and issubclass(v, Exception)]
    assert len(classes) == len(errors.__all__)
    for cls in classes:
        assert issubclass(cls, RagprodError)


def test_tree_drawn_in_docstring_matches_classes() -> None:
    """The module docstring names every error class."""
    assert errors.__doc__ is not None
    for name in errors.__all__:
        assert name in errors.__doc__


@pytest.mark.parametrize(
    ("err", "parent"),
    [
        (CircuitOpenError("llm", retry_after=1.0), UpstreamUnavailableError),
        (RateLimitedError("llm"), UpstreamUnavailableError),
        (BulkheadFullError("llm"), UpstreamUnavailableError),
        (UpstreamTimeoutError("llm", timeout=2.0), UpstreamUnavailableError),
        (DecryptionError("malformed"), CryptoError),
        (KeyNotFoundError("k1"), CryptoError),
    ],
)
def test_leaf_errors_have_the_documented_parent(err: RagprodError, parent: type) -> None:
    """Callers can catch a family (all upstream refusals, all crypto failures)."""
    assert isinstance(err, parent)


def test_upstream_errors_carry_structured_fields() -> None:
    """retry_after, name and timeout are attributes, not only text."""
    err = CircuitOpenError("embeddings", retry_after=2.5)
    assert (err.name, err.retry_after) == ("embeddings", 2.5)
    assert "retry after 2.500s" in str(err)
    timeout = UpstreamTimeoutError("llm", timeout=0.25)
    assert timeout.timeout == 0.25
    assert str(timeout) == "upstream timed out after 0.250s: llm"
    assert RateLimitedError("x").retry_after is None


def test_query_rejected_never_quotes_the_query() -> None:
    """A rejection describes the query by length and reason, never its text."""
    query = "my card is 4111 1111 1111 1111" * 200
    err = QueryRejectedError("too_long", length=len(query), limit=4000)
    assert err.reason == "too_long"
    assert "4111" not in str(err)
    assert str(err) == f"query rejected: too_long (length={len(query)}, limit=4000)"


def test_configuration_error_lists_every_problem() -> None:
    """One ConfigurationError reports all problems at once."""
    err = ConfigurationError(["RAGPROD-E001 chunk overlap", "RAGPROD-E002 no LLM"])
    assert err.problems == ("RAGPROD-E001 chunk overlap", "RAGPROD-E002 no LLM")
    assert "2 problems" in str(err)
    assert "RAGPROD-E002" in str(err)
    assert str(ConfigurationError("one")) == "invalid configuration: one"


def test_configuration_error_needs_a_problem() -> None:
    """An empty problem list is a programming error, not a silent pass."""
    with pytest.raises(ValueError, match="at least one"):
        ConfigurationError([])


def test_crypto_errors_name_key_ids_only() -> None:
    """Crypto errors carry the key id and reason code."""
    err = DecryptionError("authentication_failed", key_id="k2")
    assert (err.reason, err.key_id) == ("authentication_failed", "k2")
    assert KeyNotFoundError("gone").key_id == "gone"
    assert "gone" in str(KeyNotFoundError("gone"))


def test_errors_chain_their_cause() -> None:
    """Translated backend errors keep the original as ``__cause__``."""
    with pytest.raises(RagprodError) as caught:
        try:
            raise ConnectionError("backend")
        except ConnectionError as exc:
            raise CircuitOpenError("redis") from exc
    assert isinstance(caught.value.__cause__, ConnectionError)
