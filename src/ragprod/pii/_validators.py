"""Checksums and validity rules, kept apart from the patterns that find candidates.

Each validator takes the matched string and answers ``True`` when it is a
plausible value of its type. They are pure functions, cheap, and unit-tested
one by one.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from datetime import date

__all__ = [
    "de_tax_id_valid",
    "entropy_bits",
    "iban_valid",
    "ip_valid",
    "luhn_valid",
    "nino_valid",
    "plausible_birth_date",
    "ssn_valid",
]

_NON_ALNUM = re.compile(r"[^0-9A-Za-z]")

# IBAN length per country (SWIFT IBAN registry, plus the common experimental ones).
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27,
    "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27,
    "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22,
    "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32,
    "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
    "MN": 20, "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31,
    "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25, "SV": 28, "TL": 23,
    "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}  # fmt: skip


def luhn_valid(value: str) -> bool:
    """Whether the digits of ``value`` pass the Luhn checksum (13 to 19 digits).

    >>> luhn_valid("4111 1111 1111 1111"), luhn_valid("4111 1111 1111 1112")
    (True, False)
    """
    digits = [ord(c) - 48 for c in value if "0" <= c <= "9"]
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(value: str) -> bool:
    """Whether ``value`` (compact or grouped) is an IBAN: known country, length, mod-97.

    >>> iban_valid("DE89 3704 0044 0532 0130 00"), iban_valid("DE89370400440532013001")
    (True, False)
    """
    compact = _NON_ALNUM.sub("", value).upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact[2:4].isdigit():
        return False
    rearranged = compact[4:] + compact[:4]
    try:
        number = int("".join(str(int(c, 36)) for c in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


def ssn_valid(value: str) -> bool:
    """Whether ``value`` is a possible US SSN (area, group and serial rules).

    Area 000, 666 and 900-999, group 00 and serial 0000 are never issued, nor
    are a few famous advertising numbers.

    >>> ssn_valid("536-22-1245"), ssn_valid("666-22-1245"), ssn_valid("123-45-6789")
    (True, False, False)
    """
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) != 9 or len(set(digits)) == 1:
        return False
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return False
    return digits not in ("123456789", "078051120", "219099999")


_NINO = re.compile(r"^(?!BG|GB|KN|NK|NT|TN|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z]\d{6}[A-D]$")


def nino_valid(value: str) -> bool:
    """Whether ``value`` is a UK National Insurance number (prefix and suffix rules).

    >>> nino_valid("QQ 12 34 56 C"), nino_valid("AB123456C"), nino_valid("GB123456A")
    (False, True, False)
    """
    compact = _NON_ALNUM.sub("", value).upper()
    return bool(_NINO.match(compact)) and not compact.startswith("QQ")


def de_tax_id_valid(value: str) -> bool:
    """Whether ``value`` is a German tax id (Steuer-IdNr): 11 digits, ISO 7064 check.

    >>> de_tax_id_valid("86095742719"), de_tax_id_valid("86095742718")
    (True, False)
    """
    digits = "".join(c for c in value if c.isdigit())
    if len(digits) != 11 or digits[0] == "0":
        return False
    counts = Counter(digits[:10])
    if sorted(counts.values())[-1] not in (2, 3) or len(counts) not in (8, 9):
        return False
    product = 10
    for c in digits[:10]:
        s = (int(c) + product) % 10 or 10
        product = (s * 2) % 11
    check = (11 - product) % 10
    return check == int(digits[10])


def ip_valid(value: str) -> bool:
    """Whether ``value`` is an IPv4 or IPv6 address (not an unspecified ``0.0.0.0``/``::``).

    >>> ip_valid("192.168.1.20"), ip_valid("2001:db8::1"), ip_valid("999.1.1.1")
    (True, True, False)
    """
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return False
    return not address.is_unspecified


def entropy_bits(value: str) -> float:
    """Shannon entropy of ``value`` in bits per character.

    >>> round(entropy_bits("aaaa"), 2), entropy_bits("abcd")
    (0.0, 2.0)
    """
    if not value:
        return 0.0
    n = len(value)
    return abs(sum(c / n * math.log2(c / n) for c in Counter(value).values()))


def plausible_birth_date(year: int, month: int, day: int, *, today: date | None = None) -> bool:
    """Whether the date exists and lies between 1900 and today.

    >>> plausible_birth_date(1985, 2, 28), plausible_birth_date(1985, 2, 30)
    (True, False)
    """
    try:
        d = date(year, month, day)
    except ValueError:
        return False
    return date(1900, 1, 1) <= d <= (today or date.today())
