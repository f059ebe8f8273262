"""Anonymizing and restoring: operators, stable pseudonyms, round trips (hypothesis)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics
from ragprod.pii import AnonymizedText, PIIAnonymizer, Vault

KEY = b"test-key-0123456789abcdef"
TEXT = (
    "Dear Mr. John Smith, card 4111 1111 1111 1111, mail john.smith@example.org, "
    "call +44 20 7946 0958. Smith can wire to DE89 3704 0044 0532 0130 00."
)

PII_SAMPLES = [
    "ana.lima@example.org", "+44 20 7946 0958", "4111 1111 1111 1111", "536-22-1245",
    "DE89 3704 0044 0532 0130 00", "192.168.1.20", "AKIAIOSFODNN7EXAMPLE", "Dear Sarah,",
    "Mr. John O'Connor", "postgres://app:s3cr3t!@db/x", "DOB: 1985-03-12", "password=Hunter2!x",
]  # fmt: skip
FILLER = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30
)  # any text, surrogates aside (they cannot be encoded at all)
MIXED = st.lists(st.one_of(FILLER, st.sampled_from(PII_SAMPLES)), max_size=8).map(" ".join)
# glued together without spaces: candidates overlap and compete
GLUED = st.lists(
    st.one_of(st.text(alphabet="abXY Mr.:,\n'09-+@()[]", max_size=8), st.sampled_from(PII_SAMPLES)),
    max_size=8,
).map("".join)


@pytest.fixture(scope="module")
def pii() -> PIIAnonymizer:
    return PIIAnonymizer(key=KEY)


def test_pseudonymize_replaces_every_value_and_restores(pii: PIIAnonymizer) -> None:
    """Every value becomes a pseudonym; ``deanonymize`` gives back the exact text."""
    out = pii.anonymize(TEXT)
    for value in ("John Smith", "4111", "john.smith@example.org", "7946", "DE89"):
        assert value not in out.text
    assert "Smith" not in out.text  # the repeated surname too
    assert "@example.invalid" in out.text  # e-mail pseudonyms stay e-mail-shaped
    assert pii.deanonymize(out.text, out.mapping) == TEXT
    assert pii.deanonymize(out.text) == TEXT  # through the vault
    assert set(out.mapping.values()) <= {TEXT[e.start : e.end] for e in out.entities}


def test_same_value_same_pseudonym_across_texts_and_instances() -> None:
    """Under one key a value always gets the same pseudonym; another key gives another."""
    a, b = PIIAnonymizer(key=KEY), PIIAnonymizer(key=KEY)
    first = a.anonymize("mail ana@example.org").text
    assert b.anonymize("ana@example.org wrote").text.startswith(first.split()[1])
    assert a.pseudonym("EMAIL_ADDRESS", "ana@example.org") == first.split()[1]
    other = PIIAnonymizer(key=b"another-key-0123456789").anonymize("mail ana@example.org").text
    assert other != first


def test_without_a_key_instances_of_one_process_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key configured: all anonymizers of the process share one random key."""
    monkeypatch.delenv("RAGPROD_PII_KEY", raising=False)
    assert PIIAnonymizer().pseudonym("PERSON", "Ana") == PIIAnonymizer().pseudonym("PERSON", "Ana")
    assert PIIAnonymizer().pseudonym("PERSON", "Ana") != PIIAnonymizer(key=KEY).pseudonym(
        "PERSON", "Ana"
    )


def test_pseudonyms_are_stable_across_processes() -> None:
    """A new interpreter with the same key (from RAGPROD_PII_KEY) makes the same pseudonym."""
    code = (
        "from ragprod.pii import PIIAnonymizer; "
        "print(PIIAnonymizer().anonymize('ana@example.org').text)"
    )
    env = {**os.environ, "RAGPROD_PII_KEY": KEY.decode()}
    outs = {
        subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       check=True).stdout.strip()
        for _ in range(2)
    }  # fmt: skip
    assert outs == {PIIAnonymizer(key=KEY).anonymize("ana@example.org").text}


@pytest.mark.parametrize(
    ("operator", "expected"),
    [("mask", "mail ***************"), ("redact", "mail "), ("replace", "mail <EMAIL_ADDRESS>")],
)
def test_irreversible_operators(operator: str, expected: str) -> None:
    """mask, redact and replace produce fixed shapes and no mapping."""
    out = PIIAnonymizer(key=KEY, operator=operator).anonymize("mail ana@example.org")
    assert (out.text, dict(out.mapping)) == (expected, {})


def test_hash_operator_is_keyed_and_stable() -> None:
    """hash gives the same tag for the same value and key, another for another key."""
    h1 = PIIAnonymizer(key=KEY, operator="hash").anonymize("ana@example.org").text
    h2 = PIIAnonymizer(key=KEY, operator="hash").anonymize("ana@example.org").text
    h3 = PIIAnonymizer(key=b"k" * 32, operator="hash").anonymize("ana@example.org").text
    assert h1 == h2 != h3
    assert h1.startswith("<EMAIL_ADDRESS:")


def test_operator_per_type() -> None:
    """A mapping picks the operator per type, ``*`` for the rest."""
    pii = PIIAnonymizer(key=KEY, operator={"SECRET": "redact", "*": "replace"})
    assert pii.anonymize("password=Hunter2!x ana@example.org").text == "password= <EMAIL_ADDRESS>"


def test_scrub_uses_type_labels(pii: PIIAnonymizer) -> None:
    """``scrub`` is the irreversible form for logs and span attributes."""
    assert pii.scrub("user ana@example.org failed") == "user <EMAIL_ADDRESS> failed"


def test_bad_configuration_is_a_typed_error() -> None:
    """An unknown operator or a short key raises ConfigurationError without the key."""
    with pytest.raises(ConfigurationError):
        PIIAnonymizer(operator="shred")
    with pytest.raises(ConfigurationError) as info:
        PIIAnonymizer(key=b"short")
    assert "short" not in str(info.value)


def test_non_string_input_is_a_type_error(pii: PIIAnonymizer) -> None:
    """analyze/anonymize/deanonymize refuse non-strings."""
    for call in (pii.analyze, pii.anonymize, pii.deanonymize):
        with pytest.raises(TypeError):
            call(b"bytes")  # type: ignore[arg-type]


def test_reprs_hold_no_values(pii: PIIAnonymizer) -> None:
    """Reprs of results, entities and the anonymizer never show PII."""
    out = pii.anonymize(TEXT)
    for r in (repr(out), repr(out.entities), repr(pii), repr(pii.vault)):
        assert "Smith" not in r
        assert "4111" not in r
        assert "example.org" not in r


def test_batch_and_async_forms_agree(pii: PIIAnonymizer) -> None:
    """Batch and async forms give what the sync form gives."""
    texts = [TEXT, "nothing here", "ana@example.org " * 5000]
    sync = [pii.anonymize(t) for t in texts]

    async def run() -> tuple[list[AnonymizedText], list[AnonymizedText], list[str]]:
        singles = [await pii.aanonymize(t) for t in texts]
        batch = await pii.aanonymize_batch(texts)
        restored = [await pii.adeanonymize(s.text, s.mapping) for s in singles]
        assert [await pii.aanalyze(t) for t in texts] == [list(s.entities) for s in sync]
        return singles, batch, restored

    singles, batch, restored = asyncio.run(run())
    assert [s.text for s in singles] == [s.text for s in batch] == [s.text for s in sync]
    assert [s.text for s in pii.anonymize_batch(texts)] == [s.text for s in sync]
    assert pii.analyze_batch(texts[:1]) == [list(sync[0].entities)]
    assert restored == texts


def test_metrics_count_types_only() -> None:
    """ragprod_pii_entities_total counts by type; no label value holds PII."""
    metrics = RagMetrics()
    pii = PIIAnonymizer(key=KEY, metrics=metrics)
    pii.anonymize(TEXT)
    assert metrics.value("ragprod_pii_entities_total", type="EMAIL_ADDRESS") == 1.0
    assert metrics.value("ragprod_pii_entities_total", type="PERSON") == 2.0
    exposition = "".join(str(s) for m in metrics.registry.collect() for s in m.samples)
    assert "Smith" not in exposition
    assert "example.org" not in exposition


def test_vault_conflict_picks_another_pseudonym() -> None:
    """If a pseudonym is already taken by another value, the next round is used."""
    vault = Vault()
    pii = PIIAnonymizer(key=KEY, vault=vault)
    alias = pii.pseudonym("EMAIL_ADDRESS", "ana@example.org")
    vault.put(alias, "someone-else@example.org")
    out = pii.anonymize("ana@example.org")
    assert alias not in out.text
    assert pii.deanonymize(out.text) == "ana@example.org"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(MIXED, GLUED))
def test_properties_of_anonymize(text: str) -> None:
    """Never crashes; offsets valid and disjoint; round trip exact; idempotent; consistent."""
    pii = PIIAnonymizer(key=KEY)
    out = pii.anonymize(text)
    previous_end = 0
    for e in out.entities:
        assert previous_end <= e.start < e.end <= len(text)
        assert text[e.start : e.end] in out.mapping.values()
        previous_end = e.end
    assert pii.deanonymize(out.text, out.mapping) == text
    again = pii.anonymize(out.text)
    assert again.text == out.text
    assert not again.entities
    assert PIIAnonymizer(key=KEY).anonymize(text).text == out.text


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=200))
def test_anonymize_never_crashes_on_any_string(text: str) -> None:
    """Any string, even with lone surrogates, is analyzed without error."""
    pii = PIIAnonymizer(key=KEY)
    out = pii.anonymize(text)
    assert pii.deanonymize(out.text, out.mapping) == text


def test_default_vault_is_shared_by_the_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anonymizers without their own vault restore each other's pseudonyms."""
    monkeypatch.delenv("RAGPROD_PII_KEY", raising=False)
    ingest, answer = PIIAnonymizer(), PIIAnonymizer()
    stored = ingest.anonymize("ticket from ana.shared@example.org").text
    assert answer.deanonymize(stored) == "ticket from ana.shared@example.org"
    assert PIIAnonymizer(vault=Vault()).vault is not ingest.vault


@pytest.mark.parametrize("operator", ["redact", "mask", "replace", "hash"])
@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=GLUED)
def test_irreversible_operators_keep_offsets_valid(operator: str, text: str) -> None:
    """Every operator reports disjoint, in-range entities, even on glued text."""
    out = PIIAnonymizer(key=KEY, operator=operator).anonymize(text)
    previous_end = 0
    for e in out.entities:
        assert previous_end <= e.start < e.end <= len(text)
        previous_end = e.end


def test_restore_function_matches_deanonymize() -> None:
    """The bound restorer gives what deanonymize gives, for the mapping and the vault."""
    anonymizer = PIIAnonymizer(key=b"restore-function-key-0123456789")
    first = anonymizer.anonymize("mail jane.doe@example.com today")
    second = anonymizer.anonymize("call +44 20 7946 0958")
    restore = anonymizer.restore_function(first.mapping)
    for text in (first.text, second.text, f"{first.text} / {second.text}", "no pseudonyms"):
        assert restore(text) == anonymizer.deanonymize(text, first.mapping)
    assert restore(first.text) == "mail jane.doe@example.com today"
