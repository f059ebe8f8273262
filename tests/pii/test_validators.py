"""The validators: checksums and validity rules, one by one."""

from __future__ import annotations

import random
import string
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ragprod.pii._validators import (
    de_tax_id_valid,
    entropy_bits,
    iban_valid,
    ip_valid,
    luhn_valid,
    nino_valid,
    plausible_birth_date,
    ssn_valid,
)
from tests.pii.corpus import iban, luhn_complete


@pytest.mark.parametrize(
    "number", ["4111 1111 1111 1111", "5500-0000-0000-0004", "378282246310005", "6011111111111117"]
)
def test_luhn_accepts_known_test_cards(number: str) -> None:
    """Well-known test card numbers pass Luhn, with or without separators."""
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111 1111 1111 1112", "0000 0000 0000 0000", "4111", ""])
def test_luhn_rejects_bad_numbers(number: str) -> None:
    """A wrong check digit, a constant run or a too-short number fails."""
    assert not luhn_valid(number)


@given(st.sampled_from(["4", "51", "37", "6011"]), st.integers(min_value=0, max_value=2**32))
def test_luhn_accepts_generated_and_rejects_any_single_digit_change(prefix: str, seed: int) -> None:
    """A number completed with its Luhn digit passes; changing its last digit fails."""
    number = luhn_complete(prefix, 16, random.Random(seed))
    assert luhn_valid(number)
    changed = number[:-1] + str((int(number[-1]) + 1) % 10)
    assert not luhn_valid(changed)


@pytest.mark.parametrize(
    "value",
    ["DE89 3704 0044 0532 0130 00", "GB82WEST12345698765432", "FR1420041010050500013M02606",
     "NL91ABNA0417164300", "CH9300762011623852957"],
)  # fmt: skip
def test_iban_accepts_registry_examples(value: str) -> None:
    """Official IBAN examples validate, compact or grouped."""
    assert iban_valid(value)


@pytest.mark.parametrize(
    "value", ["DE89 3704 0044 0532 0130 01", "XX89370400440532013000", "DE8937040044053201300"]
)
def test_iban_rejects_bad_checksum_country_or_length(value: str) -> None:
    """A wrong check, an unknown country or a wrong length fails."""
    assert not iban_valid(value)


@given(
    st.sampled_from(["DE", "GB", "FR", "NL", "ES", "IT", "AT", "CH", "BE"]), st.integers(0, 2**32)
)
def test_iban_generated_values_validate(country: str, seed: int) -> None:
    """Every IBAN the corpus generator makes passes mod-97."""
    assert iban_valid(iban(random.Random(seed), country))


@pytest.mark.parametrize(
    ("value", "ok"),
    [("536-22-1245", True), ("000-22-1245", False), ("666-22-1245", False),
     ("912-22-1245", False), ("536-00-1245", False), ("536-22-0000", False),
     ("123-45-6789", False), ("078-05-1120", False), ("111-11-1111", False)],
)  # fmt: skip
def test_ssn_rules(value: str, ok: bool) -> None:
    """Area 000/666/9xx, group 00, serial 0000 and advertising numbers are invalid."""
    assert ssn_valid(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [("AB 12 34 56 C", True), ("AB123456C", True), ("QQ 12 34 56 C", False),
     ("GB 12 34 56 A", False), ("DA 12 34 56 A", False), ("AB 12 34 56 E", False)],
)  # fmt: skip
def test_nino_rules(value: str, ok: bool) -> None:
    """UK NINO prefixes and suffixes follow HMRC's rules."""
    assert nino_valid(value) is ok


def test_de_tax_id_check_digit() -> None:
    """The German tax id's ISO 7064 check digit is verified."""
    assert de_tax_id_valid("86095742719")
    assert not de_tax_id_valid("86095742718")
    assert not de_tax_id_valid("12345678901")


@pytest.mark.parametrize(
    ("value", "ok"),
    [("192.168.1.20", True), ("2001:db8::1", True), ("fe80::1ff:fe23:4567:890a", True),
     ("999.1.1.1", False), ("0.0.0.0", False), ("::", False), ("12:30:45", False)],
)  # fmt: skip
def test_ip_validation(value: str, ok: bool) -> None:
    """IPv4 and IPv6 are validated by ipaddress; unspecified addresses do not count."""
    assert ip_valid(value) is ok


def test_entropy_separates_tokens_from_words() -> None:
    """Random tokens have high entropy per character, repeated characters none."""
    rng = random.Random(1)
    token = "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(32))
    assert entropy_bits(token) > 4.0
    assert entropy_bits("aaaaaaaa") == 0.0
    assert entropy_bits("") == 0.0


def test_birth_dates_must_exist_and_be_in_range() -> None:
    """Impossible, future and pre-1900 dates are not birth dates."""
    assert plausible_birth_date(1985, 2, 28)
    assert not plausible_birth_date(1985, 2, 30)
    assert not plausible_birth_date(1899, 12, 31)
    assert not plausible_birth_date(2030, 1, 1, today=date(2026, 1, 1))
