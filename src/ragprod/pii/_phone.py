"""Phone numbers: one regex pass for candidates, then ``phonenumbers`` to parse and validate.

Presidio's phone recognizer runs ``phonenumbers.PhoneNumberMatcher`` once per
region over the whole text; here one cheap pattern finds number-shaped
candidates and only those are parsed, in the regions the language hints name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import phonenumbers

from ragprod.pii._builtin import THING_IDS
from ragprod.pii._entity import Entity
from ragprod.pii._recognizer import Recognizer, context_pattern, digit_runs

__all__ = ["PhoneRecognizer", "regions_for"]

_REGIONS = {
    "en": ("US", "GB", "IE"),
    "de": ("DE", "AT", "CH"),
    "fr": ("FR", "BE", "CH"),
    "es": ("ES",),
    "it": ("IT",),
    "nl": ("NL", "BE"),
}


def regions_for(language_hints: Sequence[str]) -> tuple[str, ...]:
    """The phone regions to try for the given language hints (or ISO regions), in order."""
    out: list[str] = []
    for hint in language_hints:
        h = hint.replace("-", "_")
        if "_" in h:  # a locale like en_GB: just its region
            region = h.split("_", 1)[1].upper()
            if region not in out:
                out.append(region)
            continue
        for region in _REGIONS.get(h.lower(), (h.upper(),) if len(h) == 2 else ()):
            if region not in out:
                out.append(region)
    return tuple(out)


_SEP = r"[ .\-/\u00a0]"
# One cheap scan finds runs of digits and separators; each run is then classified
# with string tests and only plausible ones are parsed by ``phonenumbers``.
_RUN = re.compile(r"\d[\d \-./()\u00a0]{5,}\d")
_US = re.compile(r"(?:1[ .-])?(?:\([2-9]\d{2}\) ?|[2-9]\d{2}[ .-])\d{3}[ .-]\d{4}")
_EXTENSION = re.compile(r"[xX]\d{1,6}(?!\w)")
_DATE_OR_SSN = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{2,4}|\d{3}-\d{2}-\d{4}")
_SENTENCE_END = re.compile(r"[.;!?\n]\s|=")
_CUES = (
    "phone", "tel", "telephone", "call", "mobile", "cell", "fax", "sms", "whatsapp", "ring",
    "contact", "number", "reach", "dial", "hotline", "telefon", "telefonnummer", "handy",
    "mobil", "rufnummer", "anrufen", "erreichbar", "téléphone", "portable", "numéro",
    "appeler", "joindre", "tél",
)  # fmt: skip


class PhoneRecognizer(Recognizer):
    """National and international phone numbers, validated with ``phonenumbers``.

    Numbers with a ``+`` or ``00`` prefix are parsed as international; numbers with
    a trunk ``0`` or US-style grouping are tried in the regions of the language
    hints. A bare digit run counts only after a phone word ("tel", "Handy",
    "portable", ...); a number after an order/invoice/tracking word does not count.

    Args:
        language_hints: languages (``"en"``) or locales (``"en_GB"``) whose
            regions are tried for national numbers.
    """

    name = "phone"
    types = frozenset({"PHONE_NUMBER"})

    def __init__(self, language_hints: Sequence[str] = ("en", "de", "fr")) -> None:
        self.regions = regions_for(language_hints) or ("US",)
        self._cues = context_pattern(_CUES)
        self._things = context_pattern((*THING_IDS, "#", "no", "nr", "n°", "№"))

    def find(self, text: str) -> Iterator[Entity]:
        """Yield each candidate that parses to a valid number in some region."""
        for run_start, run_end in digit_runs(text):
            start = run_start
            if start and text[start - 1] in "+(":
                start -= 1
            first = text[start]
            value = text[start:run_end]
            if first not in "+(0" and not (value.isdigit() or _US.match(value)):
                continue  # not shaped like a phone number
            if start:
                prev = text[start - 1]
                if prev.isalnum() or prev in "_+/.:-":
                    continue  # part of a longer token
            after = text[run_end] if run_end < len(text) else " "
            extension = _EXTENSION.match(text, run_end) if after in "xX" else None
            if extension is None and (after.isalnum() or after in "_-"):
                continue
            head, sep, tail = value.partition(" / ")
            if sep and tail[:1] in ("0", "+"):  # "030 1234567 / 0171 2345678": the first
                value = head
            digits = sum(c.isdigit() for c in value)
            if digits < 7 or _DATE_OR_SSN.fullmatch(value.split(" ", 1)[0]):
                continue
            if after == ":" and text[run_end + 1 : run_end + 2].isdigit():
                continue  # "03.05.2024 18:03": a timestamp
            bare = value.isdigit()
            before = text[max(0, start - 30) : start]
            cue = self._cues is not None and self._cues.search(before) is not None
            thing = self._things is not None and self._things.search(before[-16:]) is not None
            if thing and not cue:
                continue
            if bare and first != "0":
                if not cue or self._cues is None:
                    continue
                near = _SENTENCE_END.split(before)[-1]
                if not self._cues.search(near):
                    continue
            end = self._valid_prefix(value)
            if end and extension is not None and start + end == run_end:
                end = extension.end() - start  # "555-0147x2051": the extension belongs to it
            if end:
                score = (0.75 if first in "+(0" or not bare else 0.5) + (0.2 if cue else 0.0)
                yield Entity(start, start + end, "PHONE_NUMBER", min(score, 1.0), self.name)

    def _valid_prefix(self, value: str) -> int:
        """Length of the longest valid number at the start of ``value`` (0 if none)."""
        attempts = 0
        while attempts < 3:
            if sum(c.isdigit() for c in value) <= 15:  # longer is never one number
                attempts += 1
                if self._valid(value):
                    return len(value)
            cut = max(value.rfind(" "), value.rfind("-"), value.rfind("."), value.rfind("/"))
            if cut <= 0:
                return 0
            value = value[:cut].rstrip(" .-/()")
        return 0

    def _valid(self, value: str) -> bool:
        international = value.startswith("+") or (value.startswith("00") and value[2] != "0")
        if international:
            candidate = value if value.startswith("+") else "+" + value[2:]
            return _is_valid(candidate, None)
        for region in self.regions:
            if value.startswith("0") and region in ("US", "CA"):
                continue
            if _is_valid(value, region):
                return True
        return False


def _is_valid(value: str, region: str | None) -> bool:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException:
        return False
    return bool(phonenumbers.is_valid_number(number))
