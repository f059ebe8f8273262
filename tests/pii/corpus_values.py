# ruff: noqa: E501
"""Value generators for the labeled PII corpus: numbers with valid check digits, tokens, DSNs."""

from __future__ import annotations

import base64
import json
import random
import string
from dataclasses import dataclass, field

import phonenumbers


@dataclass
class Doc:
    """A document being built: text plus labeled spans and hard negatives."""

    locale: str
    kind: str
    parts: list[str] = field(default_factory=list)
    spans: list[tuple[int, int, str]] = field(default_factory=list)
    negatives: list[tuple[int, int, str]] = field(default_factory=list)
    length: int = 0

    def add(self, text: str) -> None:
        self.parts.append(text)
        self.length += len(text)

    def pii(self, value: str, kind: str) -> None:
        self.spans.append((self.length, self.length + len(value), kind))
        self.add(value)

    def neg(self, value: str, kind: str) -> None:
        self.negatives.append((self.length, self.length + len(value), kind))
        self.add(value)

    def to_json(self) -> dict[str, object]:
        return {"locale": self.locale, "kind": self.kind, "text": "".join(self.parts),
                "spans": self.spans, "negatives": self.negatives}  # fmt: skip


# -- value generators ----------------------------------------------------------------------


def digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + digits(rng, length - len(prefix) - 1)
    total = 0
    for i, c in enumerate(reversed(body)):
        d = int(c)
        if i % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return body + str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15),
                                 ("6011", 16), ("4", 16), ("35", 16)])  # fmt: skip
    number = luhn_complete(prefix, length, rng)
    style = rng.choice(["compact", "space", "dash"])
    if style == "compact":
        return number
    sep = " " if style == "space" else "-"
    if length == 15:
        return sep.join([number[:4], number[4:10], number[10:]])
    return sep.join(number[i : i + 4] for i in range(0, length, 4))


def invalid_card(rng: random.Random) -> str:
    number = luhn_complete("4", 16, rng)
    bad = number[:-1] + str((int(number[-1]) + rng.randint(1, 9)) % 10)
    return " ".join(bad[i : i + 4] for i in range(0, 16, 4))


def ssn(rng: random.Random) -> str:
    while True:
        area = rng.randint(1, 899)
        if area != 666:
            return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def iban(rng: random.Random, country: str | None = None) -> str:
    country = country or rng.choice(["DE", "GB", "FR", "NL", "ES", "IT", "AT", "CH", "BE"])
    bban = {
        "DE": lambda: digits(rng, 18),
        "GB": lambda: rng.choice(["NWBK", "BARC", "MIDL", "LOYD"]) + digits(rng, 14),
        "FR": lambda: digits(rng, 10) + "".join(rng.choice("ABCDEFGHJK0123456789") for _ in range(11)) + digits(rng, 2),
        "NL": lambda: rng.choice(["ABNA", "INGB", "RABO"]) + digits(rng, 10),
        "ES": lambda: digits(rng, 20),
        "IT": lambda: rng.choice("ABCXYZ") + digits(rng, 10) + digits(rng, 12),
        "AT": lambda: digits(rng, 16),
        "CH": lambda: digits(rng, 17),
        "BE": lambda: digits(rng, 12),
    }[country]()  # fmt: skip
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    compact = f"{country}{check:02d}{bban}"
    if rng.random() < 0.5:
        return compact
    return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))


def phone(rng: random.Random, region: str) -> str:
    while True:
        if region == "US":
            national = f"{rng.randint(2, 9)}{digits(rng, 2)}{rng.randint(2, 9)}{digits(rng, 6)}"
        elif region == "GB":
            national = rng.choice(["20", "7", "161", "131", "117"]) + digits(rng, 8)
            national = national[:10]
        elif region == "DE":
            national = rng.choice(["30", "89", "40", "151", "160", "171", "221"]) + digits(rng, 8)
        else:
            national = rng.choice("1234567") + digits(rng, 8)
        number = phonenumbers.parse(national, region)
        if phonenumbers.is_valid_number(number):
            break
    fmt = rng.choice(["national", "international", "e164", "custom"])
    if fmt == "national":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if fmt == "international":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    if fmt == "e164":
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    nat = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
    if region == "US":
        d = "".join(c for c in nat if c.isdigit())
        return rng.choice([f"{d[:3]}-{d[3:6]}-{d[6:]}", f"{d[:3]}.{d[3:6]}.{d[6:]}",
                           f"+1-{d[:3]}-{d[3:6]}-{d[6:]}"])  # fmt: skip
    if region == "FR":
        return nat.replace(" ", rng.choice([".", " "]))
    if region == "DE":
        return nat.replace(" ", "/", 1) if rng.random() < 0.5 else nat
    return nat


def ipv4(rng: random.Random) -> str:
    first = rng.choice([10, 172, 192, 81, 203, 54, 8, 145])
    return f"{first}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"


def ipv6(rng: random.Random) -> str:
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    if rng.random() < 0.5:
        return "2001:db8::" + ":".join(groups[:3])
    return ":".join(groups)


def token(rng: random.Random, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def b64url(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def secret_line(doc: Doc, rng: random.Random) -> None:
    kind = rng.randrange(9)
    if kind == 0:
        doc.add("AWS_ACCESS_KEY_ID=")
        doc.pii("AKIA" + token(rng, 16, string.ascii_uppercase + string.digits), "SECRET")
    elif kind == 1:
        doc.add("export GITHUB_TOKEN=")
        doc.pii("ghp_" + token(rng, 36), "SECRET")
    elif kind == 2:
        doc.add("slack bot token: ")
        doc.pii(f"xoxb-{digits(rng, 11)}-{digits(rng, 12)}-{token(rng, 24)}", "SECRET")
    elif kind == 3:
        doc.add('OPENAI_API_KEY="')
        doc.pii("sk-proj-" + token(rng, 40, string.ascii_letters + string.digits + "_-"), "SECRET")
        doc.add('"')
    elif kind == 4:
        doc.add("Authorization: Bearer ")
        jwt = ".".join([b64url({"alg": "HS256", "typ": "JWT"}),
                        b64url({"sub": digits(rng, 8), "iat": 1700000000 + rng.randint(0, 10**6)}),
                        token(rng, 43, string.ascii_letters + string.digits + "_-")])  # fmt: skip
        doc.pii(jwt, "SECRET")
    elif kind == 5:
        doc.add("stripe key ")
        doc.pii("sk_live_" + token(rng, 24), "SECRET")
    elif kind == 6:
        doc.add(rng.choice(["api_key = '", "client_secret: '", "apiKey='"]))
        doc.pii(token(rng, 32), "SECRET")
        doc.add("'")
    elif kind == 7:
        doc.add(rng.choice(["password=", "DB_PASSWORD=", "Passwort: ", "mot de passe : "]))
        doc.pii(rng.choice(["Sommer2024!", "hunter2-Blue", "Tr0ub4dor&3", "P@ssw0rd#77",
                            "correct-Horse-9"]) + digits(rng, 2), "SECRET")  # fmt: skip
    else:
        doc.add("-----BEGIN RSA PRIVATE KEY-----\n")
        body = "\n".join(
            token(rng, 64, string.ascii_letters + string.digits + "+/") for _ in range(3)
        )
        doc.spans.append((doc.length - 32, doc.length + len(body) + 30, "SECRET"))
        doc.add(body + "\n-----END RSA PRIVATE KEY-----")
    doc.add("\n")


def url_credentials(doc: Doc, rng: random.Random, first: str) -> None:
    scheme = rng.choice(["postgresql", "mysql", "mongodb+srv", "redis", "amqp", "https"])
    host = rng.choice(["db.internal", "10.2.3.4", "cluster0.abcde.mongodb.net", "mq.prod.local"])
    user = first.lower().replace("é", "e").replace("ü", "u").replace("ö", "o")[:6] or "app"
    pw = token(rng, rng.randint(8, 16), string.ascii_letters + string.digits + "!$%")
    doc.add(rng.choice(["DATABASE_URL=", "conn: ", "Connection string: ", "url = "]))
    doc.add(f"{scheme}://")
    doc.pii(f"{user}:{pw}", "URL_CREDENTIALS")
    doc.add("@")
    if host[0].isdigit():
        doc.pii(host, "IP_ADDRESS")
    else:
        doc.add(host)
    doc.add(f":{rng.choice([5432, 3306, 6379, 5672, 443])}/{rng.choice(['app', 'prod', 'crm'])}\n")
