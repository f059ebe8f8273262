"""The Vault: bounded, expiring, conflict-aware and thread-safe."""

from __future__ import annotations

import threading

import pytest

from ragprod.pii import PIIAnonymizer, Vault
from ragprod.testing import FakeClock


def test_put_get_and_conflicts() -> None:
    """A pseudonym maps to one value; re-putting the same value is fine, another is refused."""
    v = Vault()
    assert v.put("PERSON_000000000001", "Ana")
    assert v.put("PERSON_000000000001", "Ana")
    assert not v.put("PERSON_000000000001", "Bea")
    assert v.get("PERSON_000000000001") == "Ana"
    assert "PERSON_000000000001" in v
    assert "nope" not in v
    assert 3 not in v
    assert v.get("PERSON_unknown") is None


def test_bounded_lru() -> None:
    """Past max_entries the least recently used pseudonym is forgotten."""
    v = Vault(max_entries=2)
    v.put("a", "1")
    v.put("b", "2")
    v.get("a")
    v.put("c", "3")
    assert (v.get("a"), v.get("b"), v.get("c")) == ("1", None, "3")
    assert len(v) == 2
    assert sorted(v) == ["a", "c"]


def test_ttl_with_injected_clock() -> None:
    """Entries expire ttl seconds after their last put; an expired pseudonym can be reused."""
    clock = FakeClock()
    v = Vault(ttl=10, clock=clock)
    v.put("a", "1")
    clock.advance(9)
    assert v.get("a") == "1"
    clock.advance(1)
    assert v.get("a") is None
    v.put("b", "1")
    clock.advance(10)
    assert v.put("b", "2")


def test_bad_arguments() -> None:
    """Capacity and ttl must be positive."""
    with pytest.raises(ValueError, match="max_entries"):
        Vault(max_entries=0)
    with pytest.raises(ValueError, match="ttl"):
        Vault(ttl=0)


def test_clear_and_repr_hide_values() -> None:
    """clear empties the vault; repr shows sizes only."""
    v = Vault()
    v.put("PERSON_000000000001", "Ana Lima")
    assert "Ana" not in repr(v)
    v.clear()
    assert len(v) == 0


def test_thread_safety_under_concurrent_anonymize() -> None:
    """Many threads anonymizing through one vault keep it consistent and bounded."""
    vault = Vault(max_entries=500)
    pii = PIIAnonymizer(key=b"thread-key-0123456789", vault=vault)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(60):
                text = f"mail user{n}x{i}@example.org or user{i}@example.org"
                out = pii.anonymize(text)
                assert pii.deanonymize(out.text, out.mapping) == text
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(vault) <= 500
    for alias in vault:
        assert vault.get(alias) is None or alias == pii.pseudonym(
            "EMAIL_ADDRESS", vault.get(alias) or ""
        )
