"""Detection: each built-in type finds its values and leaves look-alikes alone."""

from __future__ import annotations

import re

import pytest

from ragprod.pii import Entity, PIIAnonymizer, Recognizer

KEY = b"test-key-0123456789abcdef"


@pytest.fixture(scope="module")
def pii() -> PIIAnonymizer:
    return PIIAnonymizer(key=KEY)


def found(pii: PIIAnonymizer, text: str) -> list[tuple[str, str]]:
    return [(e.type, text[e.start : e.end]) for e in pii.analyze(text)]


POSITIVES = [
    ("Write to ana.lima@example.org today", "EMAIL_ADDRESS", "ana.lima@example.org"),
    ("https://x.io/c?email=ana@example.org", "EMAIL_ADDRESS", "ana@example.org"),
    ("mailto:j.o'neil+tag@mail.example.co.uk", "EMAIL_ADDRESS", "j.o'neil+tag@mail.example.co.uk"),
    ("call (212) 736-5000 now", "PHONE_NUMBER", "(212) 736-5000"),
    ("call 212-736-5000.", "PHONE_NUMBER", "212-736-5000"),
    ("ring +44 20 7946 0958", "PHONE_NUMBER", "+44 20 7946 0958"),
    ("ring me on 020 7946 0958", "PHONE_NUMBER", "020 7946 0958"),
    ("Telefon: 030 12345678", "PHONE_NUMBER", "030 12345678"),
    ("Handy 0171 2345678", "PHONE_NUMBER", "0171 2345678"),
    ("Tel +49 (0)30 1234567", "PHONE_NUMBER", "+49 (0)30 1234567"),
    ("mon numéro : 06 12 34 56 78", "PHONE_NUMBER", "06 12 34 56 78"),
    ("appelez le 01.42.68.53.00", "PHONE_NUMBER", "01.42.68.53.00"),
    ("card 4111 1111 1111 1111 declined", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("card 5500-0000-0000-0004", "CREDIT_CARD", "5500-0000-0000-0004"),
    ("amex 378282246310005", "CREDIT_CARD", "378282246310005"),
    ("SSN 536-22-1245 on file", "US_SSN", "536-22-1245"),
    ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
    ("pay GB82WEST12345698765432 now", "IBAN_CODE", "GB82WEST12345698765432"),
    ("from 192.168.1.20 blocked", "IP_ADDRESS", "192.168.1.20"),
    ("from fe80::1ff:fe23:4567:890a blocked", "IP_ADDRESS", "fe80::1ff:fe23:4567:890a"),
    ("key AKIAIOSFODNN7EXAMPLE leaked", "SECRET", "AKIAIOSFODNN7EXAMPLE"),
    ("token ghp_0123456789abcdefghijklmnopqrstuvwxyzAB", "SECRET",
     "ghp_0123456789abcdefghijklmnopqrstuvwxyzAB"),
    ('password="Tr0ub4dor&3"', "SECRET", "Tr0ub4dor&3"),
    ("api_key = 9f8e7d6c5b4a39281706f5e4d3c2b1a0", "SECRET", "9f8e7d6c5b4a39281706f5e4d3c2b1a0"),
    ("Authorization: Bearer abc123DEF456ghi789JKL0", "SECRET", "abc123DEF456ghi789JKL0"),
    ("DSN postgres://app:s3cr3t!@db:5432/x", "URL_CREDENTIALS", "app:s3cr3t!"),
    ("Server=tcp:db;Database=app;User Id=sa;Password=Str0ng!Pass;", "URL_CREDENTIALS",
     "Str0ng!Pass"),
    ("dsn: host=db user=app password=Xy9$secret dbname=crm", "URL_CREDENTIALS", "Xy9$secret"),
    ("jdbc:postgresql://db/app?user=app&password=S3cr3tPass!", "URL_CREDENTIALS", "S3cr3tPass!"),
    ("DOB: 1985-03-12.", "DATE_OF_BIRTH", "1985-03-12"),
    ("geboren am 12. März 1985", "DATE_OF_BIRTH", "12. März 1985"),
    ("née le 3 juillet 1990", "DATE_OF_BIRTH", "3 juillet 1990"),
    ("Dear Sarah,\nthanks", "PERSON", "Sarah"),
    ("Mr. John O'Connor called", "PERSON", "John O'Connor"),
    ("Name: Anna-Lena Kowalski\n", "PERSON", "Anna-Lena Kowalski"),
    ("Mit freundlichen Grüßen\nKlaus von Weber", "PERSON", "Klaus von Weber"),
    ("Nom : Jean-Pierre Dubois\n", "PERSON", "Jean-Pierre Dubois"),
    ("From: Rory McAllister <r@x.io>", "PERSON", "Rory McAllister"),
    ("Priya Raman from accounting called", "PERSON", "Priya Raman"),
    ("contact our agent, Marco Rossi, today", "PERSON", "Marco Rossi"),
    ("Cardholder: ELENA PETROVA\n", "PERSON", "ELENA PETROVA"),
    ("opened by maria@example.com (Maria Gonzalez)", "PERSON", "Maria Gonzalez"),
    ("Signed,\nAlejandro García", "PERSON", "Alejandro García"),
    ("[10:32] Sarah: hi\n[10:33] agent: hello\n[10:34] Sarah: ok", "PERSON", "Sarah"),
    ("Mark Jones: thanks for the help", "PERSON", "Mark Jones"),
    ("Chat: [09:12] Lisa: locked\n[09:14] Lisa: DOB is 1990-05-17", "PERSON", "Lisa"),
    ("Lisa: locked\nLisa: DOB is 1990-05-17", "DATE_OF_BIRTH", "1990-05-17"),
    ("Dear Jane Doe, Jane's phone is off", "PERSON", "Jane"),
    ("Tel. 089 / 123 456 78", "PHONE_NUMBER", "089 / 123 456 78"),
    ("call 1 (800) 555-0199 today", "PHONE_NUMBER", "1 (800) 555-0199"),
    ("tel +1-202-555-0147x2051", "PHONE_NUMBER", "+1-202-555-0147x2051"),
    ("Marie-Thérèse Le Roux de la Fontaine <mt@x.fr>", "PERSON",
     "Marie-Thérèse Le Roux de la Fontaine"),
    ("social security number 536221245", "US_SSN", "536221245"),
    ("card: 4111.1111.1111.1111", "CREDIT_CARD", "4111.1111.1111.1111"),
    ("DOB 12-Mar-1985;", "DATE_OF_BIRTH", "12-Mar-1985"),
    ("Date of Birth: 03/12/85", "DATE_OF_BIRTH", "03/12/85"),
    ("Geb.-Datum: 01.02.1990", "DATE_OF_BIRTH", "01.02.1990"),
    ("Authorization: Basic dXNlcjpwYXNzd29yZDEyMw==", "SECRET", "dXNlcjpwYXNzd29yZDEyMw=="),
    ("National Insurance AB 12 34 56 C", "UK_NINO", "AB 12 34 56 C"),
    ("Steuer-IdNr 86095742719", "DE_TAX_ID", "86095742719"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "kind", "value"), POSITIVES, ids=[p[1] + ":" + p[2] for p in POSITIVES]
)
def test_finds_each_type(pii: PIIAnonymizer, text: str, kind: str, value: str) -> None:
    """Each built-in type is found with exact offsets."""
    assert (kind, value) in found(pii, text)


NEGATIVES = [
    "job ran at 2024-03-15T14:32:07Z and 15.03.2024 14:32:07",
    "epoch 1700000000 and ts=1712345678123",
    "Order #10234567, order no. 402-5567889-1234567, Bestellnummer 0123456789",
    "Invoice INV-2024-001234, commande n° 0645123789",
    "upgraded to v2.14.3, version 10.0.19045.3693, build 1.2.3.4",
    "test card 4111 1111 1111 1112 was declined",
    "ISBN 978-3-16-148410-0",
    "sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "request id 550e8400-e29b-41d4-a716-446655440000",
    "tracking 1Z999AA10123456784 and 9400 1000 0000 0000 0000 00",
    "total $1,299.99 or 1.299,00 € or EUR 45,50",
    "Part no. 536-22-1245 is in stock",
    "took 35660 ms at 12:30:45",
    "Dear Customer, the Support Team",
    "The Support Team said the New York Office from Monday is closed.",
    "Dear ALL, the IT Department wrote: READ THIS. Customer Success called.",
    "agent: Invoice INV-2024-537294; Die Rechnung ist leider doppelt.",
    "our basic plan costs 12 EUR; release 2024.01.15.1234",
    "box 4x4, 2024x768 and 1920x1080 screens",
    "Subject: refund\nShipping Address: Main St\nNote: call\nNote: again\nStatus: open",
    "password: must be 8 characters; token: expired; api_key=${API_KEY}",
]


@pytest.mark.parametrize("text", NEGATIVES)
def test_leaves_hard_negatives_alone(pii: PIIAnonymizer, text: str) -> None:
    """Timestamps, ids, versions, digests, prices and placeholders are not PII."""
    assert found(pii, text) == []


def test_custom_recognizer_composes_with_pipe() -> None:
    """A user recognizer joins the built-ins; ``a | b`` finds what either finds."""
    employee = Recognizer.from_pattern("EMPLOYEE_ID", r"\bEMP-\d{6}\b", score=0.9)
    badge = Recognizer.from_pattern("BADGE", r"\bB\d{4}\b", score=0.9)
    both = employee | badge
    assert both.types == {"EMPLOYEE_ID", "BADGE"}
    pii = PIIAnonymizer(key=KEY, recognizers=[both])
    text = "EMP-004211 with badge B1234 mailed ana@example.org"
    assert [e.type for e in pii.analyze(text)] == ["EMPLOYEE_ID", "BADGE", "EMAIL_ADDRESS"]
    out = pii.anonymize(text)
    assert "EMP-004211" not in out.text
    assert pii.deanonymize(out.text) == text


def test_subclassed_recognizer() -> None:
    """A Recognizer subclass only needs ``find``."""

    class Ticket(Recognizer):
        name, types = "ticket", frozenset({"TICKET"})

        def find(self, text: str):  # type: ignore[no-untyped-def]
            for m in re.finditer(r"TCK\d+", text):
                yield Entity(m.start(), m.end(), "TICKET", 0.8, self.name)

    pii = PIIAnonymizer(key=KEY, recognizers=[Ticket()], entities=["TICKET"])
    assert [e.recognizer for e in pii.analyze("see TCK42 and ana@example.org")] == ["ticket"]


def test_validator_and_context_are_separate_from_the_pattern() -> None:
    """A validator drops matches; a context word lifts a low base score over the bar."""
    rec = Recognizer.from_pattern(
        "ORDER_REF", r"\b\d{6}\b", validator=lambda v: v != "000000", score=0.3,
        context=("ref",),
    )  # fmt: skip
    pii = PIIAnonymizer(key=KEY, recognizers=[rec], entities=["ORDER_REF"])
    assert found(pii, "ref 123456") == [("ORDER_REF", "123456")]
    assert found(pii, "see 654321") == []
    assert found(pii, "ref 000000") == []


def test_allow_and_deny_lists() -> None:
    """Allowed values are never PII; denied values always are."""
    pii = PIIAnonymizer(key=KEY, allow=["support@example.org"], deny=["Project Falcon"])
    text = "Mail support@example.org or ana@example.org about project falcon"
    assert found(pii, text) == [
        ("EMAIL_ADDRESS", "ana@example.org"),
        ("DENY_LIST", "project falcon"),
    ]
    typed = PIIAnonymizer(key=KEY, deny={"CODENAME": ["Falcon"]})
    assert found(typed, "Falcon launches") == [("CODENAME", "Falcon")]


def test_entities_restricts_types() -> None:
    """``entities=`` limits detection to the listed types."""
    pii = PIIAnonymizer(key=KEY, entities=["EMAIL_ADDRESS"])
    assert found(pii, "ana@example.org, +44 20 7946 0958") == [("EMAIL_ADDRESS", "ana@example.org")]


def test_language_hints_choose_phone_regions() -> None:
    """National numbers count only in the regions of the language hints."""
    text = "Telefon: 030 12345678"
    assert found(PIIAnonymizer(key=KEY, language_hints=("de",)), text)
    assert not found(PIIAnonymizer(key=KEY, language_hints=("en_US",)), text)


def test_overlaps_resolve_to_one_entity(pii: PIIAnonymizer) -> None:
    """Overlapping candidates collapse: credentials in a URL win over an e-mail shape."""
    assert found(pii, "redis://bob:hunter22@cache.example.com:6379") == [
        ("URL_CREDENTIALS", "bob:hunter22")
    ]


def test_entity_is_frozen_slotted_and_validates_offsets() -> None:
    """Entities are immutable values; an empty or negative span is refused."""
    e = Entity(1, 4, "PERSON", 0.9, "person")
    with pytest.raises(AttributeError):
        e.start = 2  # type: ignore[misc]
    assert not hasattr(e, "__dict__")
    with pytest.raises(ValueError, match="start < end"):
        Entity(4, 4, "PERSON")
