"""Rule-based recognizers for structured PII: each a pattern plus a validator."""

from __future__ import annotations

import re
from collections.abc import Iterator

from ragprod.pii._entity import Entity
from ragprod.pii._recognizer import PatternRecognizer, Recognizer, context_pattern, digit_runs
from ragprod.pii._validators import (
    IBAN_LENGTHS,
    de_tax_id_valid,
    entropy_bits,
    iban_valid,
    ip_valid,
    luhn_valid,
    nino_valid,
    ssn_valid,
)

__all__ = [
    "EmailRecognizer",
    "IbanRecognizer",
    "IpRecognizer",
    "SecretRecognizer",
    "credit_card_recognizer",
    "de_tax_id_recognizer",
    "nino_recognizer",
    "ssn_recognizer",
    "url_credentials_recognizer",
]

# Words that, right before a number, say it is an identifier of a thing, not a person.
THING_IDS = (
    "order", "order no", "order number", "invoice", "inv", "ticket", "case", "ref", "reference",
    "tracking", "shipment", "parcel", "sku", "part", "part no", "p/n", "pn", "item", "model",
    "serial", "batch", "lot", "build", "version", "ver", "release", "isbn", "po", "receipt",
    "transaction", "txn", "confirmation", "booking", "bestellung", "bestellnummer", "rechnung",
    "rechnungsnummer", "auftrag", "artikel", "art.-nr", "sendungsnummer", "commande", "facture",
    "réf", "référence", "colis", "numéro de commande", "epoch", "timestamp", "ts", "id",
)  # fmt: skip


def _in_url(text: str, start: int) -> bool:
    """Whether ``start`` lies in the user info of a URL (``scheme://user:pw@host``)."""
    head = text[max(0, start - 200) : start]
    k = head.rfind("://")
    return k >= 0 and not any(c.isspace() or c in "/?#" for c in head[k + 3 :])


class EmailRecognizer(Recognizer):
    """E-mail addresses: found from each ``@``, local part and dotted domain checked."""

    name = "email"
    types = frozenset({"EMAIL_ADDRESS"})
    _local = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._%+'-]{0,63}[A-Za-z0-9_%+-])?$")
    _domain = re.compile(
        r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w@-])"
    )

    def find(self, text: str) -> Iterator[Entity]:
        """Yield each ``local@domain.tld`` around an ``@``."""
        at = text.find("@")
        while at >= 0:
            domain = self._domain.match(text, at + 1)
            local = self._local.search(text, max(0, at - 64), at) if domain and at else None
            if domain is not None and local is not None:
                start = local.start()
                clean_left = not start or not (
                    text[start - 1].isalnum() or text[start - 1] in "._%+-"
                )
                if (
                    clean_left
                    and ".." not in text[start : domain.end()]
                    and not _in_url(text, start)
                ):
                    yield Entity(start, domain.end(), "EMAIL_ADDRESS", 0.9, self.name)
            at = text.find("@", at + 1)


def _card_valid(value: str) -> bool:
    digits = "".join(c for c in value if c.isdigit())
    n = len(digits)
    first = digits[0]
    if first == "4":
        ok = n in (13, 16, 19)
    elif digits[:4] in ("1800", "2131"):
        ok = n == 15  # old JCB ranges
    elif first == "3":
        ok = (
            (digits[:2] in ("34", "37") and n == 15)
            or (digits[:2] in ("30", "36", "38", "39") and 14 <= n <= 19)
            or (digits[:2] == "35" and 16 <= n <= 19)
        )
    elif first in "2":
        ok = 2221 <= int(digits[:4]) <= 2720 and n == 16
    elif first in "56":
        ok = 16 <= n <= 19 or (first == "5" and 12 <= n <= 19)
    else:
        ok = False
    return ok and luhn_valid(digits)


def credit_card_recognizer() -> PatternRecognizer:
    """Card numbers (13-19 digits, grouped by spaces or dashes): issuer prefix and Luhn."""
    return PatternRecognizer(
        "CREDIT_CARD",
        r"\d{4}([ .-]?)\d{4}\1\d{4}\1\d{1,7}(?![\w-]|[.,]\d)"
        r"|\d{4}([ -]?)\d{6}\2\d{4,5}(?![\w-]|[.,]\d)",
        validator=_card_valid,
        score=0.85,
        not_after="-_.",
        in_digit_runs=True,
        min_length=13,
        negative_context=("order", "invoice", "tracking", "isbn", "ref", "epoch"),
        name="credit_card",
    )


def ssn_recognizer() -> Recognizer:
    """US social security numbers (``123-45-6789`` shapes) under the SSA's validity rules."""
    context = ("ssn", "social security", "social security number", "ss#", "ss no", "taxpayer")
    shaped = PatternRecognizer(
        "US_SSN",
        r"\d{3}([- ])\d{2}\1\d{4}(?![\w-])",
        validator=ssn_valid,
        score=0.6,
        context=context,
        negative_context=THING_IDS,
        name="us_ssn",
        not_after="-_",
        in_digit_runs=True,
        min_length=11,
    )
    bare = PatternRecognizer(
        "US_SSN",
        r"(?i:ssn|social security(?: number| no\.?)?)[ :#]{1,3}(\d{9})(?![\w-])",
        group=1,
        validator=ssn_valid,
        score=0.9,
        name="us_ssn",
        requires=("ssn", "social security"),
    )
    return shaped | bare


def nino_recognizer() -> PatternRecognizer:
    """UK National Insurance numbers (``AB 12 34 56 C``), prefix rules checked."""
    return PatternRecognizer(
        "UK_NINO",
        r"[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)",
        validator=nino_valid,
        score=0.7,
        not_after="_",
        context=("national insurance", "nino", "ni number", "ni no"),
        name="uk_nino",
    )


def de_tax_id_recognizer() -> PatternRecognizer:
    """German tax ids (Steuer-IdNr, 11 digits, ISO 7064 check digit) in a tax context."""
    return PatternRecognizer(
        "DE_TAX_ID",
        r"\d{2} ?\d{3} ?\d{3} ?\d{3}(?![\w-])",
        validator=de_tax_id_valid,
        score=0.3,
        not_after="-_",
        requires=("steuer", "tax", "idnr", "identifikationsnummer"),
        in_digit_runs=True,
        min_length=11,
        context=("steuer-id", "steuerid", "steuer-idnr", "steueridentifikationsnummer", "idnr",
                 "tax id", "steuernummer", "identifikationsnummer"),
        name="de_tax_id",
    )  # fmt: skip


class IbanRecognizer(Recognizer):
    """IBANs of every registry country, compact or grouped by four, mod-97 checked."""

    name = "iban"
    types = frozenset({"IBAN_CODE"})
    _candidate = re.compile(r"([A-Z]{2})(\d{2})((?: ?[A-Z0-9]){10,32})")

    def find(self, text: str) -> Iterator[Entity]:
        """Yield each candidate trimmed to its country's length that passes mod-97."""
        pos = 0
        while (m := self._candidate.search(text, pos)) is not None:
            pos = m.start() + 1  # candidates are greedy: the next one may start inside
            if m.start() and text[m.start() - 1].isalnum():
                continue
            length = IBAN_LENGTHS.get(m.group(1))
            if length is None:
                continue
            need, end = length - 4, m.start(3)
            rest = m.group(3)
            for i, c in enumerate(rest):
                if c != " ":
                    need -= 1
                    if need == 0:
                        end = m.start(3) + i + 1
                        break
            if need or (end < len(text) and text[end].isalnum()):
                continue
            if iban_valid(text[m.start() : end]):
                yield Entity(m.start(), end, "IBAN_CODE", 0.95, self.name)
                pos = end


class IpRecognizer(Recognizer):
    """IPv4 and IPv6 addresses, validated with :mod:`ipaddress`; not version strings."""

    name = "ip"
    types = frozenset({"IP_ADDRESS"})
    _v4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?!\w|\.\d)")
    _v6_seed = re.compile(r":[0-9A-Fa-f]{0,4}:")
    _v6_left = re.compile(r"[0-9A-Fa-f:]{0,39}$")
    _v6_right = re.compile(r"[0-9A-Fa-f:]*(?:\d{1,3}(?:\.\d{1,3}){3})?(?:%\w+)?")
    _versions = context_pattern(
        ("version", "ver", "v", "build", "release", "firmware", "os", "sdk", "app", "patch",
         "update", "oid", "python", "chrome")
    )  # fmt: skip

    def _v4_matches(self, text: str) -> Iterator[re.Match[str]]:
        for lo, hi in digit_runs(text):  # a dotted quad is always inside a digit run
            yield from self._v4.finditer(text, lo, hi)

    def find(self, text: str) -> Iterator[Entity]:
        """Yield dotted quads (not preceded by a version word) and valid IPv6 addresses."""
        for m in self._v4_matches(text):
            start = m.start()
            if start and (text[start - 1].isalnum() or text[start - 1] in "._"):
                continue
            if any(int(octet) > 255 or (len(octet) > 1 and octet[0] == "0")
                   for octet in m.group().split(".")):  # fmt: skip
                continue
            assert self._versions is not None
            if self._versions.search(text, max(0, start - 12), start):
                continue
            yield Entity(start, m.end(), "IP_ADDRESS", 0.75, self.name)
        if text.count(":") < 2:
            return
        pos = 0
        while True:
            seed = self._v6_seed.search(text, pos)
            if seed is None:
                return
            left = self._v6_left.search(text, max(0, seed.start() - 39), seed.start())
            start = left.start() if left is not None else seed.start()
            right = self._v6_right.match(text, seed.end())
            end = right.end() if right is not None else seed.end()
            pos = max(end, seed.end())
            value = (
                text[start:end].rstrip(":")
                if not text[start:end].endswith("::")
                else text[start:end]
            )
            before = text[start - 1] if start else " "
            after = text[end] if end < len(text) else " "
            if before.isalnum() or before in "_.:" or after.isalnum() or after == "_":
                continue
            if (
                value.count(":") >= 2
                and sum(c.isalnum() for c in value) >= 4
                and ip_valid(value.split("%")[0])
            ):
                yield Entity(start, start + len(value), "IP_ADDRESS", 0.75, self.name)


def url_credentials_recognizer() -> PatternRecognizer:
    """``user:password`` in URLs and DSNs (``postgres://app:s3cret@db:5432/x``)."""
    return PatternRecognizer(
        "URL_CREDENTIALS",
        r"://([^\s:/@?#\"'<>]{1,128}:[^\s@/?#\"'<>]{1,256})@[\w\[]",
        group=1,
        score=0.95,
        requires=("://",),
        name="url_credentials",
    )


_PLACEHOLDER = re.compile(
    r"(?i)^(?:\*+|x+|\.+|-+|<[^>]*>|\$\{.*\}|\{\{.*\}\}|%[a-z_]+%|\$[a-z_]+|null|none|nil|true|"
    r"false|changeme|redacted|hidden|secret|password|your[_-]?\w*|example|dummy|test|string|"
    r"\[redacted\]|undefined|required|optional|must|empty|expired|invalid|\?+)$"
)
_PASSWORD_NAMES = re.compile(r"(?i)pass|pwd")


def _secret_value_ok(name: str, value: str) -> bool:
    if _PLACEHOLDER.match(value) or len(value) < 6:
        return False
    if _PASSWORD_NAMES.search(name):
        classes = sum(
            (any(c.islower() for c in value), any(c.isupper() for c in value),
             any(c.isdigit() for c in value), any(not c.isalnum() for c in value))
        )  # fmt: skip
        return classes >= 2
    return len(value) >= 12 and entropy_bits(value) >= 3.0 and any(c.isdigit() for c in value)


_KNOWN: dict[str, re.Pattern[str]] = {
    literal: re.compile(pattern)
    for literal, pattern in (
        ("AKIA", r"AKIA[A-Z0-9]{16}(?![\w-])"),
        ("ASIA", r"ASIA[A-Z0-9]{16}(?![\w-])"),
        ("ghp_", r"ghp_[A-Za-z0-9]{36,255}(?![\w-])"),
        ("gho_", r"gho_[A-Za-z0-9]{36,255}(?![\w-])"),
        ("ghu_", r"ghu_[A-Za-z0-9]{36,255}(?![\w-])"),
        ("ghs_", r"ghs_[A-Za-z0-9]{36,255}(?![\w-])"),
        ("ghr_", r"ghr_[A-Za-z0-9]{36,255}(?![\w-])"),
        ("github_pat_", r"github_pat_[A-Za-z0-9_]{22,255}(?![\w-])"),
        ("xox", r"xox[abposr]-[A-Za-z0-9-]{10,250}(?![\w-])"),
        ("sk-", r"sk-(?:proj-|ant-|live-)?[A-Za-z0-9_-]{20,200}(?![\w-])"),
        ("_live_", r"[spr]k_live_[A-Za-z0-9]{16,200}(?![\w-])"),
        ("_test_", r"[spr]k_test_[A-Za-z0-9]{16,200}(?![\w-])"),
        ("AIza", r"AIza[0-9A-Za-z_-]{35}(?![\w-])"),
        ("glpat-", r"glpat-[A-Za-z0-9_-]{20,}(?![\w-])"),
        ("npm_", r"npm_[A-Za-z0-9]{36}(?![\w-])"),
        ("SG.", r"SG\.[A-Za-z0-9_-]{16,32}\.[A-Za-z0-9_-]{16,64}(?![\w-])"),
        ("eyJ", r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}(?![\w-])"),
        ("PRIVATE KEY", r"-----BEGIN [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----[\s\S]{16,8192}?"
                        r"-----END [A-Z ]{0,20}PRIVATE KEY(?: BLOCK)?-----"),
    )
}  # fmt: skip
_SECRET_WORDS = (
    "pass", "pwd", "secret", "token", "key", "auth", "credential", "mot de passe", "mot_de_passe",
    "kennwort",
)  # fmt: skip
_ASSIGN = re.compile(
    r"(pass(?:word|wd|phrase|wort)?|pwd|secret|token|api[_-]?key|apikey|access[_-]?key"
    r"|private[_-]?key|auth(?:[_-]?key)?|credentials?|client[_-]?secret|signing[_-]?key"
    r"|mot[_ ]de[_ ]passe|kennwort)[\w.-]{0,20}[\"']?\s{0,3}(?:=>|:=|=|:)\s{0,3}[\"']?"
    r"([^\s\"',;<>`)]{4,512})"
)
_NEXT_PARAM = re.compile(r"&\w+=")
_PSEUDONYM_NAME = re.compile(r"[A-Z][A-Z0-9_]*_[0-9a-f]{12}")
# keys of ADO.NET/ODBC/JDBC/libpq connection strings: a password among them is a credential
_DSN_KEYS = re.compile(
    r"(?:^|[;\s?&])(?:server|data source|host|hostname|address|addr|uid|user id|userid|user|"
    r"username|database|dbname|initial catalog|port)\s*="
)
_BEARER = re.compile(r"(?:bearer|token|basic)\s+([a-z0-9._~+/-]{16,512}=*)(?![\w.~+/=-])")


class SecretRecognizer(Recognizer):
    """API keys, tokens, private keys and values assigned to secret-looking names.

    A password inside a connection string (``Server=db;User Id=sa;Password=...``,
    ``host=db user=app password=...``) is reported as ``URL_CREDENTIALS``.

    Known formats (cloud access keys, GitHub/Slack/OpenAI/Stripe/Google tokens,
    JWTs, private key blocks) are matched by their prefix; a value assigned to a
    name holding "password", "secret", "token", "api_key"... counts when it
    looks like a real secret (mixed character classes for passwords, high
    entropy for keys and tokens; placeholders such as ``****`` or ``${VAR}``
    do not).
    """

    name = "secret"
    types = frozenset({"SECRET", "URL_CREDENTIALS"})

    def find(self, text: str) -> Iterator[Entity]:
        """Yield known token formats, bearer tokens and secret assignments."""
        for literal, pattern in _KNOWN.items():
            if literal in text:
                for m in pattern.finditer(text):
                    if not (
                        m.start() and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "_-")
                    ):
                        yield Entity(m.start(), m.end(), "SECRET", 0.95, self.name)
        lowered = text.lower()
        if len(lowered) != len(text):  # a rare character changed length: offsets would drift
            lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        if "bearer" in lowered or "token" in lowered or "basic" in lowered:
            for m in _BEARER.finditer(lowered):
                value = text[m.start(1) : m.end(1)]
                if entropy_bits(value) >= 3.0 and any(c.isdigit() for c in value):
                    yield Entity(m.start(1), m.end(1), "SECRET", 0.85, self.name)
        if any(w in lowered for w in _SECRET_WORDS):
            for m in _ASSIGN.finditer(lowered):
                if _PSEUDONYM_NAME.search(text, max(0, m.start() - 20), m.start(2)):
                    continue  # "SECRET_3f9a...: 1234": the name is one of our pseudonyms
                value = _NEXT_PARAM.split(text[m.start(2) : m.end(2)], 1)[0]
                if _secret_value_ok(m.group(1), value):
                    kind = "SECRET"
                    if _PASSWORD_NAMES.search(m.group(1)):
                        line_start = lowered.rfind("\n", 0, m.start()) + 1
                        line_end = lowered.find("\n", m.end())
                        line = lowered[line_start : line_end if line_end >= 0 else len(lowered)]
                        if _DSN_KEYS.search(line):
                            kind = "URL_CREDENTIALS"  # a password in a connection string
                    yield Entity(m.start(2), m.start(2) + len(value), kind, 0.8, self.name)
