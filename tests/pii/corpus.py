# ruff: noqa: E501
"""A seeded, labeled PII corpus (en_US, en_GB, de_DE, fr_FR) and its scorer.

Documents are support tickets, HR notes, chat logs, invoices and config
snippets built from templates. Every PII value is labeled with its span and
type; look-alikes that must stay untouched (timestamps, epoch numbers, order
and invoice numbers, versions, invalid card numbers, ISBNs, hex digests,
UUIDs, tracking numbers, prices, SSN-shaped part numbers) are labeled as hard
negatives. Values are generated here (no Faker): names from small per-locale
lists, numbers with the right check digits, phone numbers validated with
``phonenumbers``. The detector under test never sees these lists.

``python tests/pii/corpus.py`` rewrites ``tests/pii/data/corpus.jsonl``.
"""

from __future__ import annotations

import json
import random
import string
import sys
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.pii.corpus_values import (
    Doc,
    card,
    digits,
    iban,
    invalid_card,
    ipv4,
    ipv6,
    luhn_complete,
    phone,
    secret_line,
    ssn,
    token,
    url_credentials,
)
from tests.pii.scoring import TYPES, Score, score

DATA = Path(__file__).resolve().parent / "data" / "corpus.jsonl"
LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR")

FIRST = {
    "en_US": ["James", "Maria", "Tyler", "Keisha", "Robert", "Jennifer", "DeShawn", "Emily",
              "Carlos", "Megan", "Brandon", "Ashley", "Kevin", "Lauren", "Michael", "Priya"],
    "en_GB": ["Oliver", "Amelia", "Harry", "Isla", "George", "Poppy", "Alfie", "Freya",
              "Callum", "Siobhan", "Rhys", "Niamh", "Hamish", "Imogen", "Rory", "Ffion"],
    "de_DE": ["Lukas", "Anna-Lena", "Jürgen", "Sabine", "Maximilian", "Katrin", "Özlem",
              "Dieter", "Friederike", "Tobias", "Ursula", "Jannik", "Heike", "Stefan", "Birgit"],
    "fr_FR": ["Jean-Pierre", "Camille", "Théo", "Léa", "François", "Manon", "Baptiste",
              "Chloé", "Amélie", "Mathis", "Hélène", "Rémi", "Élodie", "Yannick", "Océane"],
}  # fmt: skip
LAST = {
    "en_US": ["Johnson", "Martinez", "Nguyen", "O'Connor", "Washington", "McAllister",
              "Patel", "Kowalski", "Brooks", "Ramirez", "Thompson", "Delgado", "Whitaker"],
    "en_GB": ["Smith", "Davies", "Evans", "Fitzgerald", "MacLeod", "Hughes", "Pemberton",
              "Ashworth", "Okafor", "Bainbridge", "Thornton", "Llewellyn", "Carmichael"],
    "de_DE": ["Müller", "Schneider", "Weiß", "von Hohenberg", "Krüger", "Yilmaz",
              "Schäfer", "Bergmann", "Hoffmann", "Zimmermann", "Lehmann", "Kowalczyk"],
    "fr_FR": ["Dubois", "Lefèvre", "Moreau", "de La Fontaine", "Girard", "Rousseau",
              "Fournier", "Mercier", "Benali", "Lambert", "Faure", "Chevalier", "Le Gall"],
}  # fmt: skip
DOMAINS = ["gmail.com", "outlook.com", "acme-corp.io", "mail.example-shop.co.uk", "web.de",
           "gmx.net", "orange.fr", "laposte.net", "uni-heidelberg.de", "contoso.org"]  # fmt: skip
REGION = {"en_US": "US", "en_GB": "GB", "de_DE": "DE", "fr_FR": "FR"}


__all__ = [
    "DATA",
    "LOCALES",
    "TYPES",
    "Score",
    "generate",
    "iban",
    "load",
    "luhn_complete",
    "score",
]


# -- hard negatives --------------------------------------------------------------------------

NEGATIVES: dict[str, Callable[[random.Random], tuple[str, str, str]]] = {
    "timestamp": lambda r: ("at ", f"2024-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z", " the job ran"),
    "timestamp2": lambda r: ("logged ", f"{r.randint(1, 28):02d}.{r.randint(1, 12):02d}.2024 {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}", ""),
    "epoch": lambda r: ("epoch ", str(r.randint(1_500_000_000, 1_800_000_000)), ""),
    "epoch_ms": lambda r: ("ts=", str(r.randint(1_500_000_000_000, 1_800_000_000_000)), ""),
    "order": lambda r: ("Order #", digits(r, r.randint(8, 11)), ""),
    "order2": lambda r: ("order no. ", f"{digits(r, 3)}-{digits(r, 7)}-{digits(r, 7)}", ""),
    "invoice": lambda r: ("Invoice ", f"INV-2024-{digits(r, 6)}", ""),
    "bestellung": lambda r: ("Bestellnummer ", "0" + digits(r, 9), ""),
    "commande": lambda r: ("commande n° ", "0" + digits(r, 9), ""),
    "version": lambda r: ("version ", f"{r.randint(1, 12)}.{r.randint(0, 20)}.{r.randint(0, 40)}.{r.randint(0, 250)}", ""),
    "semver": lambda r: ("upgraded to v", f"{r.randint(1, 9)}.{r.randint(0, 30)}.{r.randint(0, 99)}", ""),
    "invalid_card": lambda r: ("test card ", invalid_card(r), " (declined)"),
    "isbn": lambda r: ("ISBN ", f"978-{r.randint(0, 3)}-{digits(r, 2)}-{digits(r, 6)}-{r.randint(0, 9)}", ""),
    "digest": lambda r: ("sha256 ", token(r, 64, "0123456789abcdef"), ""),
    "git": lambda r: ("commit ", token(r, 40, "0123456789abcdef"), ""),
    "uuid": lambda r: ("request id ", "-".join(token(r, n, "0123456789abcdef") for n in (8, 4, 4, 4, 12)), ""),
    "tracking_ups": lambda r: ("tracking ", "1Z" + token(r, 16, string.ascii_uppercase + string.digits), ""),
    "tracking_usps": lambda r: ("USPS tracking ", " ".join(digits(r, 4) for _ in range(5)) + " " + digits(r, 2), ""),
    "price": lambda r: ("total ", r.choice([f"${r.randint(1, 9)},{digits(r, 3)}.{digits(r, 2)}", f"{r.randint(1, 9)}.{digits(r, 3)},{digits(r, 2)} €", f"EUR {r.randint(10, 999)},{digits(r, 2)}"]), ""),
    "part": lambda r: ("Part no. ", ssn(r), ""),
    "duration": lambda r: ("took ", f"{r.randint(100, 99999)} ms", ""),
}  # fmt: skip


def negative(doc: Doc, rng: random.Random, name: str | None = None) -> None:
    name = name or rng.choice(sorted(NEGATIVES))
    before, value, after = NEGATIVES[name](rng)
    doc.add(before)
    doc.neg(value, name)
    doc.add(after)


# -- documents -------------------------------------------------------------------------------

GREET = {"en_US": ["Hi ", "Hello ", "Dear "], "en_GB": ["Dear ", "Hi ", "Morning "],
         "de_DE": ["Hallo ", "Liebe ", "Guten Tag "], "fr_FR": ["Bonjour ", "Cher ", "Salut "]}  # fmt: skip
TITLE = {"en_US": ["Mr. ", "Ms. ", "Dr. "], "en_GB": ["Mr ", "Mrs ", "Dr "],
         "de_DE": ["Herr ", "Frau ", "Dr. "], "fr_FR": ["M. ", "Mme ", "Madame "]}  # fmt: skip
SIGN = {"en_US": ["Thanks,\n", "Best regards,\n"], "en_GB": ["Kind regards,\n", "Cheers,\n"],
        "de_DE": ["Mit freundlichen Grüßen\n", "Viele Grüße\n"],
        "fr_FR": ["Cordialement,\n", "Bien à vous,\n"]}  # fmt: skip
LABEL = {"en_US": ["Customer: ", "Name: ", "Employee: "], "en_GB": ["Name: ", "Client: ", "Contact: "],
         "de_DE": ["Kunde: ", "Name: ", "Mitarbeiterin: "], "fr_FR": ["Nom : ", "Client : ", "Employé : "]}  # fmt: skip
PHRASES = {
    "en_US": ["I was charged twice for my subscription and need a refund.",
              "The export keeps failing since the last update.", "Please escalate this ticket."],
    "en_GB": ["My parcel hasn't arrived and the courier says it was delivered.",
              "Could you update the billing details on my account?", "Cheers for sorting this."],
    "de_DE": ["Die Rechnung ist leider doppelt abgebucht worden.",
              "Seit dem Update startet die App nicht mehr.", "Bitte um schnelle Rückmeldung."],
    "fr_FR": ["Ma commande n'est toujours pas arrivée.",
              "Le paiement a été refusé alors que ma carte est valide.", "Merci de votre aide."],
}  # fmt: skip
WORDS = {
    "email": {"en_US": "You can reach me at ", "en_GB": "My email is ", "de_DE": "Meine E-Mail: ", "fr_FR": "Mon adresse e-mail : "},
    "phone": {"en_US": "call me at ", "en_GB": "ring me on ", "de_DE": "Telefon: ", "fr_FR": "mon numéro : "},
    "card": {"en_US": "card number ", "en_GB": "card ending details: ", "de_DE": "Kreditkarte ", "fr_FR": "carte bancaire "},
    "iban": {"en_US": "wire to IBAN ", "en_GB": "pay into ", "de_DE": "IBAN: ", "fr_FR": "RIB/IBAN "},
    "dob": {"en_US": "DOB: ", "en_GB": "date of birth ", "de_DE": "geboren am ", "fr_FR": "né le "},
    "ip": {"en_US": "login from ", "en_GB": "seen from IP ", "de_DE": "Zugriff von ", "fr_FR": "connexion depuis "},
}  # fmt: skip
MONTHS = {"en_US": ["January", "March", "July", "October"], "en_GB": ["February", "May", "August", "December"],
          "de_DE": ["Januar", "März", "Juli", "Oktober"], "fr_FR": ["janvier", "mars", "juillet", "octobre"]}  # fmt: skip


def dob(rng: random.Random, locale: str) -> str:
    y, m, d = rng.randint(1940, 2005), rng.randint(1, 12), rng.randint(1, 28)
    if locale == "en_US":
        return rng.choice(
            [f"{m:02d}/{d:02d}/{y}", f"{MONTHS[locale][m % 4]} {d}, {y}", f"{y}-{m:02d}-{d:02d}"]
        )
    if locale == "en_GB":
        return rng.choice([f"{d:02d}/{m:02d}/{y}", f"{d} {MONTHS[locale][m % 4]} {y}"])
    if locale == "de_DE":
        return rng.choice([f"{d:02d}.{m:02d}.{y}", f"{d}. {MONTHS[locale][m % 4]} {y}"])
    return rng.choice([f"{d:02d}/{m:02d}/{y}", f"{d} {MONTHS[locale][m % 4]} {y}"])


def person(rng: random.Random, locale: str) -> tuple[str, str]:
    return rng.choice(FIRST[locale]), rng.choice(LAST[locale])


def email_for(rng: random.Random, first: str, last: str) -> str:
    clean = str.maketrans("éèêëüöäßçôîï' ", "eeeeuoabcoii--")
    local = rng.choice(
        [
            f"{first}.{last}",
            f"{first[0]}{last}",
            f"{first}{rng.randint(1, 99)}",
            token(rng, 7, string.ascii_lowercase),
        ]
    )
    return local.lower().translate(clean).replace("--", "-") + "@" + rng.choice(DOMAINS)


def structured(doc: Doc, rng: random.Random, first: str, last: str) -> None:
    loc = doc.locale
    kind = rng.choice(
        ["email", "phone", "phone", "card", "iban", "dob", "ip", "ssn", "secret", "url"]
    )
    if kind == "email":
        doc.add(WORDS["email"][loc])
        doc.pii(email_for(rng, first, last), "EMAIL_ADDRESS")
        doc.add(". ")
    elif kind == "phone":
        doc.add(WORDS["phone"][loc])
        region = REGION[loc] if rng.random() < 0.8 else rng.choice(list(REGION.values()))
        doc.pii(phone(rng, region), "PHONE_NUMBER")
        doc.add(rng.choice([". ", " tomorrow. ", ", thanks. "]))
    elif kind == "card":
        doc.add(WORDS["card"][loc])
        doc.pii(card(rng), "CREDIT_CARD")
        doc.add(" was declined. ")
    elif kind == "iban":
        doc.add(WORDS["iban"][loc])
        doc.pii(
            iban(
                rng,
                {"de_DE": "DE", "fr_FR": "FR", "en_GB": "GB"}.get(loc)
                if rng.random() < 0.6
                else None,
            ),
            "IBAN_CODE",
        )
        doc.add(". ")
    elif kind == "dob":
        doc.add(WORDS["dob"][loc])
        doc.pii(dob(rng, loc), "DATE_OF_BIRTH")
        doc.add(". ")
    elif kind == "ip":
        doc.add(WORDS["ip"][loc])
        doc.pii(ipv4(rng) if rng.random() < 0.7 else ipv6(rng), "IP_ADDRESS")
        doc.add(" blocked. ")
    elif kind == "ssn":
        doc.add(rng.choice(["SSN ", "Social Security number: ", "ssn: "]))
        doc.pii(ssn(rng), "US_SSN")
        doc.add(". ")
    elif kind == "secret":
        doc.add("\n")
        secret_line(doc, rng)
    else:
        doc.add("\n")
        url_credentials(doc, rng, first)


def name_with_cue(doc: Doc, rng: random.Random, first: str, last: str) -> None:
    loc = doc.locale
    style = rng.randrange(5)
    if style == 0:
        doc.add(rng.choice(GREET[loc]))
        doc.pii(first, "PERSON")
        doc.add(",\n")
    elif style == 1:
        doc.add(rng.choice(TITLE[loc]))
        doc.pii(last if rng.random() < 0.4 else f"{first} {last}", "PERSON")
        doc.add(rng.choice([" called about the issue. ", " a appelé. ", " hat angerufen. "]))
    elif style == 2:
        doc.add(rng.choice(LABEL[loc]))
        doc.pii(f"{first} {last}", "PERSON")
        doc.add("\n")
    elif style == 3:
        doc.add("From: ")
        doc.pii(f"{first} {last}", "PERSON")
        doc.add(" <")
        doc.pii(email_for(rng, first, last), "EMAIL_ADDRESS")
        doc.add(">\n")
    else:
        doc.add(rng.choice(["Assigned to ", "Reported by ", "Requested by "]))
        doc.pii(f"{first} {last}", "PERSON")
        doc.add(". ")


def document(rng: random.Random, locale: str) -> Doc:
    kind = rng.choice(["ticket", "hr_note", "chat", "invoice", "config"])
    doc = Doc(locale, kind)
    first, last = person(rng, locale)
    if kind in ("ticket", "hr_note"):
        name_with_cue(doc, rng, first, last)
        for _ in range(rng.randint(2, 4)):
            doc.add(rng.choice(PHRASES[locale]) + " ")
            if rng.random() < 0.7:
                structured(doc, rng, first, last)
            if rng.random() < 0.6:
                negative(doc, rng)
                doc.add(". ")
        doc.add("\n" + rng.choice(SIGN[locale]))
        doc.pii(f"{first} {last}" if rng.random() < 0.7 else first, "PERSON")
        doc.add("\n")
    elif kind == "chat":
        agent_first, agent_last = person(rng, locale)
        for i in range(rng.randint(3, 6)):
            doc.add(f"[{rng.randint(8, 18):02d}:{rng.randint(0, 59):02d}] ")
            doc.add("agent: " if i % 2 else "customer: ")
            if i == 0:
                doc.add(rng.choice(["Hi, this is ", "Hello, my name is ", "Bonjour, je m'appelle ",
                                    "Hallo, mein Name ist "]))  # fmt: skip
                doc.pii(agent_first, "PERSON")
                doc.add(" from support. ")
            elif i == 1:
                name_with_cue(doc, rng, first, last)
            elif rng.random() < 0.6:
                structured(doc, rng, first, last)
            else:
                negative(doc, rng)
            doc.add("\n")
        del agent_last
    elif kind == "invoice":
        doc.add(rng.choice(["INVOICE\n", "Rechnung\n", "Facture\n"]))
        doc.add("Invoice ")
        doc.neg(f"INV-2024-{digits(rng, 6)}", "invoice")
        doc.add("\n")
        doc.add(rng.choice(LABEL[locale]))
        doc.pii(f"{first} {last}", "PERSON")
        doc.add("\n")
        for _ in range(rng.randint(2, 4)):
            negative(
                doc,
                rng,
                rng.choice(
                    [
                        "price",
                        "order",
                        "isbn",
                        "part",
                        "tracking_ups",
                        "tracking_usps",
                        "timestamp2",
                    ]
                ),
            )
            doc.add("\n")
        structured(doc, rng, first, last)
        doc.add("\n")
        if rng.random() < 0.5:
            doc.add(WORDS["iban"][locale])
            doc.pii(iban(rng), "IBAN_CODE")
            doc.add("\n")
    else:
        doc.add("# service config, owner ")
        doc.pii(f"{first} {last}", "PERSON")
        doc.add("\n")
        for _ in range(rng.randint(2, 4)):
            if rng.random() < 0.5:
                secret_line(doc, rng)
            else:
                url_credentials(doc, rng, first)
            negative(
                doc,
                rng,
                rng.choice(
                    [
                        "digest",
                        "git",
                        "uuid",
                        "version",
                        "semver",
                        "epoch",
                        "epoch_ms",
                        "timestamp",
                        "duration",
                    ]
                ),
            )
            doc.add("\n")
        doc.add("log_level=info\nbind=")
        doc.pii(ipv4(rng), "IP_ADDRESS")
        doc.add(":8080\n")
    return doc


def generate(seed: int = 20261122, per_locale: int = 100) -> list[dict[str, object]]:
    """The corpus: ``per_locale`` documents for each locale, deterministic for a seed."""
    rng = random.Random(seed)
    return [document(rng, locale).to_json() for locale in LOCALES for _ in range(per_locale)]


def load(path: Path = DATA) -> list[dict[str, object]]:
    """The committed corpus."""
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def main() -> None:
    docs = generate()
    DATA.parent.mkdir(parents=True, exist_ok=True)
    with DATA.open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    print(f"wrote {len(docs)} documents to {DATA}", file=sys.stderr)


if __name__ == "__main__":
    main()
