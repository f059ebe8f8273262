"""Names and dates of birth, found through the words around them (no model download)."""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterator
from datetime import date

from ragprod.pii._entity import Entity
from ragprod.pii._recognizer import Recognizer, trie_alternation
from ragprod.pii._validators import plausible_birth_date

__all__ = ["BirthDateRecognizer", "PersonRecognizer"]

_UP = "A-ZÀ-ÖØ-ÞŁŚŻŹĆŃ"
_LOW = "a-zà-öø-ÿßłśżźćńœ"
_TOKEN = (
    rf"(?:[{_UP}]'[{_UP}][{_LOW}]+|(?:Mc|Mac)[{_UP}][{_LOW}]+"
    rf"|[{_UP}][{_LOW}]+(?:[{_UP}][{_LOW}]{{2,}})?(?:-[{_UP}][{_LOW}]+)?"
    rf"|[{_UP}]{{2,}}(?:-[{_UP}]{{2,}})?)"
)
_PARTICLE = (
    r"(?:van der|van den|von der|von|van|de la|de|del|della|der|den|du|le|la|di|da|dos|ten|"
    r"ter|zu|bin|ibn|al|d')"
)
_INITIAL = rf"[{_UP}]\."
_NAME = rf"(?:{_INITIAL} ?)?{_TOKEN}(?:(?: {_INITIAL})? (?:{_PARTICLE} )?{_TOKEN}){{0,3}}"

_TITLES = (
    "Mr", "Mrs", "Ms", "Miss", "Mx", "Dr", "Prof", "Sir", "Dame", "Lady", "Lord", "Herr", "Herrn",
    "Frau", "Hr", "Fr", "Mme", "Mlle", "Monsieur", "Madame", "Mademoiselle", "Dott", "Sig",
    "Sra", "Sr", "M", "MR", "MRS", "MS", "DR",
)  # fmt: skip
_NAME_LABELS = (
    "name", "full name", "first name", "last name", "legal name", "customer name", "client name",
    "contact name", "patient name", "employee name", "account name", "cardholder name",
    "card holder name", "sender name", "recipient name", "emergency contact", "guest name",
    "passenger name", "applicant name", "nom", "prénom", "nom complet", "nom du client",
    "vorname", "nachname", "name des kunden", "surname", "given name",
)  # fmt: skip
_ROLE_LABELS = (
    "customer", "client", "contact", "patient", "employee", "applicant", "tenant", "agent",
    "manager", "supervisor", "assignee", "reporter", "requester", "recipient", "sender", "guest",
    "passenger", "cardholder", "card holder", "account holder", "beneficiary", "driver", "attn",
    "from", "to", "cc", "signed", "signature", "witness", "owner", "author", "maintainer",
    "titulaire", "destinataire", "expéditeur", "employé", "employée", "salarié", "salariée",
    "interlocuteur", "responsable", "kunde", "kundin", "mitarbeiter", "mitarbeiterin",
    "ansprechpartner", "ansprechpartnerin", "empfänger", "absender", "kontoinhaber",
    "antragsteller", "mieter", "patientin", "von", "an", "bearbeiter", "inhaber", "besitzer",
    "propriétaire", "user", "benutzer",
)  # fmt: skip
_VERBS = (
    "dear", "hi", "hello", "hey", "thanks", "thank you", "cheers", "bonjour", "bonsoir", "salut",
    "cher", "chère", "merci", "hallo", "liebe", "lieber", "guten tag", "danke", "servus", "moin",
    "assigned to", "reported by", "requested by", "approved by", "submitted by", "signed by",
    "written by", "created by", "handled by", "owned by", "owner", "contact", "ask for",
    "speak to", "spoke with", "spoke to", "talked to", "called", "met with", "attention",
    "zu händen", "z.hd.", "à l'attention de", "de la part de", "rédigé par", "this is",
    "my name is", "name's", "je m'appelle", "je suis", "mein name ist", "ich heiße", "ich bin",
    "morning", "good morning", "good afternoon", "evening", "greetings",
)  # fmt: skip
_SIGNOFFS = (
    "regards", "kind regards", "best regards", "warm regards", "best", "thanks", "many thanks",
    "thank you", "cheers", "sincerely", "yours sincerely", "yours faithfully", "yours truly",
    "cordialement", "bien cordialement", "bien à vous", "salutations", "amitiés",
    "mit freundlichen grüßen", "mit freundlichem gruß", "freundliche grüße", "viele grüße",
    "beste grüße", "liebe grüße", "herzliche grüße", "gruß", "grüße", "lg", "vg", "--",
    "signed", "best wishes", "warm wishes", "warmly", "respectfully", "cordially", "yours",
    "à bientôt", "bonne journée", "schöne grüße",
)  # fmt: skip
_ROLE_NOUNS = (
    "customer", "client", "patient", "employee", "applicant", "tenant", "agent", "manager",
    "supervisor", "colleague", "advisor", "adviser", "representative", "rep", "technician",
    "engineer", "consultant", "doctor", "nurse", "lawyer", "attorney", "cardholder", "owner",
    "conseiller", "conseillère", "collègue", "médecin", "avocat", "kunde", "kundin",
    "mitarbeiter", "mitarbeiterin", "kollege", "kollegin", "berater", "beraterin",
    "ansprechpartner", "ansprechpartnerin", "sachbearbeiter", "sachbearbeiterin", "arzt",
    "ärztin", "anwalt", "anwältin",
)  # fmt: skip
_VERB_AFTER = re.compile(
    r" (?:called|phoned|rang|said|says|wrote|writes|asked|asks|reported|mentioned|confirmed|"
    r"emailed|replied|requested|complained|explained|from|hat angerufen|hat geschrieben|"
    r"a appelé|a écrit|a demandé)\b"
)

# group 1: a cue that may introduce a lone given name or surname; group 2: a role label,
# which must be followed by a full name (two words) to count.
_CUED = re.compile(
    rf"(?<![\w])(?:"
    rf"((?-i:{trie_alternation(_TITLES)})(?:\. ?| )(?:(?:med|rer\. nat|phil|jur|ing)\. )?"
    rf"|{trie_alternation(_NAME_LABELS)}\s?:[ \t]*"
    rf"|{trie_alternation(_VERBS)},?[ \t]+"
    rf"|{trie_alternation(_SIGNOFFS)}[,!.]?[ \t]*\r?\n[ \t]*)"
    rf"|({trie_alternation(_ROLE_LABELS)})\s?:[ \t]*"
    r")",
    re.IGNORECASE,
)
_TITLE_SET = frozenset(_TITLES)
_NAME_LABEL_SET = frozenset(_NAME_LABELS)
_ROLE_LABEL_SET = frozenset(_ROLE_LABELS)
_VERB_SET = frozenset(_VERBS)
_SIGNOFF_SET = frozenset(_SIGNOFFS)
_DEGREES = frozenset(("med.", "nat.", "phil.", "jur.", "ing."))


_LABEL_LAST = frozenset(w.split()[-1] for w in (*_NAME_LABELS, *_ROLE_LABELS))
_VERB_LAST = frozenset(w.split()[-1] for w in _VERBS)
_ROLE_NOUN_SET = frozenset(_ROLE_NOUNS)


def _suffix_in(words: list[str], vocabulary: frozenset[str]) -> bool:
    return any(" ".join(words[-k:]).lower() in vocabulary for k in range(1, min(4, len(words)) + 1))


def _cue_before(before: str) -> str | None:
    """What introduces the word after ``before``: ``"name"``, ``"role"`` or ``None``."""
    stripped = before.rstrip(" \t")
    if not stripped:
        return None
    if stripped[-1] == "\n":
        line = stripped[:-1].rstrip("\r").rpartition("\n")[2].strip().rstrip(",!.").lower()
        return "name" if line in _SIGNOFF_SET else None
    line = stripped.rpartition("\n")[2]
    if line[-1] == ":":
        words = line[:-1].split()[-4:]
        if not words or words[-1].lower() not in _LABEL_LAST:
            return None
        if _suffix_in(words, _NAME_LABEL_SET):
            return "name"
        return "role" if _suffix_in(words, _ROLE_LABEL_SET) else None
    words = line.split()[-4:]
    if not words:
        return None
    last = words[-1]
    if last in _DEGREES and len(words) > 1:
        last = words[-2]
    if (last.endswith(".") and last[:-1] in _TITLE_SET) or (
        last in _TITLE_SET and stripped is not before
    ):
        return "name"
    if last.endswith(","):
        last = words[-1] = last[:-1]
    if last.lower() in _ROLE_NOUN_SET:
        return "role"  # "our agent, Marco Rossi": a full name must follow
    if last.lower() not in _VERB_LAST:
        return None
    return "name" if _suffix_in(words, _VERB_SET) else None


def _cue_at_position(text: str, p: int) -> str | None:
    """:func:`_cue_before` for the word at ``p``, with a fast exit for most words."""
    end = p
    while end and text[end - 1] in " \t":
        end -= 1
    if not end:
        return None
    c = text[end - 1]
    if c == "\n":
        k = text.rfind("\n", 0, end - 1)
        line = text[k + 1 : end - 1].strip().rstrip(",!.").lower()
        return "name" if line in _SIGNOFF_SET else None
    if c == ":":
        label_end = end - 1
        while label_end and text[label_end - 1] in " \t":
            label_end -= 1
        k = max(text.rfind(" ", 0, label_end), text.rfind("\n", 0, label_end))
        if text[k + 1 : label_end].lower() not in _LABEL_LAST:
            return None
    else:
        lo = max(0, end - 32)
        k = text.rfind(" ", lo, end)
        last = text[k + 1 if k >= 0 else lo : end]
        if "\n" in last or "\t" in last:
            last = last.replace("\t", "\n").rpartition("\n")[2]
        if last not in _TITLE_SET and last[:-1] not in _TITLE_SET and last not in _DEGREES:
            word = last.rstrip(",").lower()
            if word not in _VERB_LAST and word not in _ROLE_NOUN_SET:
                return None
    return _cue_before(text[max(0, p - 48) : p])


def _not_a_name(word: str) -> bool:
    w = word.lower().rstrip(".")
    return (
        w in _STOP
        or w in _HEADERS
        or w in _NAME_LABEL_SET
        or w in _ROLE_LABEL_SET
        or w in _ROLE_NOUN_SET
        or w in _VERB_LAST
    )


def _cue_at(text: str, m: re.Match[str]) -> bool:
    """Whether the candidate name starts with a cue word itself ("Guten Tag Ursula")."""
    words = m.group().split()
    return any(" ".join(words[:k]).lower() in _VERB_SET for k in range(1, len(words)))


_CAPITAL = re.compile(rf"[{_UP}](?:[{_LOW}]|'[{_UP}]|\. ?[{_UP}]|[{_UP}]+)")
_NAME_AT = re.compile(rf"{_NAME}(?![\w'])")
_NAME_BEFORE = re.compile(rf"(?<![\w])({_NAME}) ?$")
# chat transcripts: "[10:32] Sarah: hi", "Mark Jones: thanks" (a speaker before a colon)
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?"
_SPEAKER_LINE = re.compile(rf"[ \t]*(?:\[?{_CLOCK}\]?[ \t]+)?({_NAME}):[ \t]+(?=\S)")
_SPEAKER_CLOCK = re.compile(rf"\[{_CLOCK}\][ \t]+({_NAME}):[ \t]+(?=\S)")


def _speakers(text: str) -> Iterator[re.Match[str]]:
    """Chat speakers at line starts, or after a ``[10:32]`` timestamp anywhere."""
    pos = 0
    while pos >= 0:
        m = _SPEAKER_LINE.match(text, pos)
        if m is not None:
            yield m
        pos = text.find("\n", pos)
        if pos >= 0:
            pos += 1
    if "[" in text:
        for m in _SPEAKER_CLOCK.finditer(text):
            before = text[m.start() - 1] if m.start() else "\n"
            if before != "\n":  # line starts were handled above
                yield m


_HEADERS = frozenset(
    """subject status priority summary description resolution total amount address phone
    email mail tel fax iban dob date time note notes warning error update re fwd fw info
    question answer reply response comment comments reason result action type category
    product item items price quantity qty ref reference order invoice ticket case account
    id url link file attachment version build source target host server database port
    betreff datum hinweis achtung antwort frage grund ergebnis betrag summe anschrift
    objet remarque réponse motif montant adresse sujet résumé q a tip tl;dr ps p.s
    step steps example usage output input request body header headers key value number
    details items authorization authentication token password secret shipping billing
    delivery payment contact passwort kennwort benutzer benutzername login user username
    telefon handy mobil""".split()  # noqa: SIM905
)
_EMAIL_OPEN = re.compile(r"[<(\[][\w.+-]+@")
_NAME_AFTER_EMAIL = re.compile(
    rf"@[\w-]+(?:\.[\w-]+)*\.[A-Za-z]{{2,}}[)>\]]?[ \t]*[(\[][ \t]*({_NAME})[ \t]*[)\]]"
)

_STOP = frozenset(
    """social guten tag bonjour hallo salut merci danke bonsoir moin servus
    customer customers client clients team support sir madam madame monsieur all everyone
    there colleagues colleague friends folks guys kunde kunden kundin damen herren tous service
    sales billing admin administrator order invoice ticket account manager user users the a an
    your our my this that it we you they he she i mr mrs ms dr prof thanks thank hello hi dear
    regards best cheers team's unknown n/a none null monday tuesday wednesday thursday friday
    saturday sunday montag dienstag mittwoch donnerstag freitag samstag sonntag lundi mardi
    mercredi jeudi vendredi samedi dimanche january february march april may june july august
    september october november december januar februar märz juni juli oktober dezember janvier
    février mars avril mai juin juillet août septembre octobre novembre décembre help desk
    helpdesk it hr finance legal security operations ops office bank re fw fwd subject date
    note notes please kind sincerely yours herr frau from to cc bcc sent received ok okay yes
    no new old email phone address details info information request issue problem question
    refund payment delivery shipping product service services company group inc ltd gmbh sa
    sarl llc corp und and et or le la les des du de und der die das ihr ihre votre vos notre
    nos""".split()  # noqa: SIM905
)


_POSSESSIVE = ("'s", "\u2019s")


def _word_char(c: str) -> bool:
    return c.isalnum() or c in "_'"


class PersonRecognizer(Recognizer):
    """Person names introduced by a title, a label, a greeting or a sign-off.

    Finds "Mr. John Smith", "Name: Anna Kowalski", "Dear Sarah," "Mit
    freundlichen Grüßen\\nKlaus Weber" and "Jean Dupont <jean@...>", then
    every other whole-word occurrence of those names (or of their surname)
    in the same text. Words such as "Customer" or "Team" after a greeting are
    not names. For model-based detection, add your own NER recognizer.
    """

    name = "person"
    types = frozenset({"PERSON"})

    def find(self, text: str) -> Iterator[Entity]:
        """Yield cued names, then their repeated mentions."""
        names: dict[str, float] = {}
        cued: list[tuple[int, int]] = []
        for cue_start, cue_end, score in self._cued(text):
            trimmed, end = self._trim(text, cue_start, cue_end)
            if trimmed is None:
                continue
            if (trimmed, end) != (cue_start, cue_end) and " " not in text[trimmed:end].strip():
                continue  # "agent: Invoice INV": what is left after stop words is no name
            start = trimmed
            cued.append((start, end))
            yield Entity(start, end, "PERSON", score, self.name)
            value = text[start:end]
            names[value] = max(names.get(value, 0.0), score)
            parts = [p for p in value.split() if len(p) > 2 and p.lower() not in _STOP]
            if len(parts) >= 2:
                for part in (parts[-1], parts[0]):
                    names.setdefault(part, 0.7)
        if not names:
            return
        cued.sort()
        starts = [s for s, _ in cued]
        for value, score in names.items():
            i = text.find(value)
            while i >= 0:
                j = i + len(value)
                if (i == 0 or not _word_char(text[i - 1])) and (
                    j == len(text) or not _word_char(text[j]) or text[j : j + 2] in _POSSESSIVE
                ):
                    # skip mentions inside a name already reported (cued spans barely overlap,
                    # so the cued span starting last at or before i is the one to check)
                    k = bisect.bisect_right(starts, i) - 1
                    if k < 0 or cued[k][1] < j:
                        yield Entity(i, j, "PERSON", score, self.name)
                i = text.find(value, j)

    @staticmethod
    def _cued(text: str) -> Iterator[tuple[int, int, float]]:
        verbs = [m.start() for m in _VERB_AFTER.finditer(text)]
        for cap in _CAPITAL.finditer(text):
            p = cap.start()
            if p and (text[p - 1].isalnum() or text[p - 1] in "_'-"):
                continue
            cue = _cue_at_position(text, p)
            if cue is None:
                i = bisect.bisect_left(verbs, p)
                if i == len(verbs) or verbs[i] - p > 64:
                    continue  # no cue before and no "called"/"wrote" after: not a name
            m = _NAME_AT.match(text, p)
            if m is None:
                continue
            full = " " in m.group()
            if cue is None:
                # no cue before: a full name followed by "called", "wrote", "from"...
                if (
                    full
                    and not m.group().isupper()
                    and _VERB_AFTER.match(text, m.end())
                    and not any(w.lower() in _STOP for w in m.group().split())
                ):
                    yield m.start(), m.end(), 0.75
                continue
            if (cue == "role" or m.group().isupper()) and (not full or _cue_at(text, m)):
                continue  # "Customer: Bonjour" is not a name; "Customer: Ana Lima" is
            yield m.start(), m.end(), 0.85
        if ":" in text:
            speakers = [
                m
                for m in _speakers(text)
                if not m.group(1).isupper() and not any(_not_a_name(w) for w in m.group(1).split())
            ]
            seen: dict[str, int] = {}
            for m in speakers:
                seen[m.group(1)] = seen.get(m.group(1), 0) + 1
            for m in speakers:
                # a one-word speaker ("Sarah:") must speak twice: one-word headers are common
                if " " in m.group(1) or seen[m.group(1)] > 1:
                    yield m.start(1), m.end(1), 0.75
        if "@" in text:
            for opening in _EMAIL_OPEN.finditer(text):
                lo = max(0, opening.start() - 60)
                m = _NAME_BEFORE.search(text, lo, opening.start())
                if m is not None:
                    yield m.start(1), m.end(1), 0.8
            for m in _NAME_AFTER_EMAIL.finditer(text):
                yield m.start(1), m.end(1), 0.8

    @staticmethod
    def _trim(text: str, start: int, end: int) -> tuple[int | None, int]:
        """Drop stop words at either end of a cued name; ``None`` if nothing is left."""
        words = text[start:end].split(" ")
        while words and (
            words[0].lower().rstrip(".") in _STOP
            or (words[0].endswith(".") and len(words) > 1 and len(words[0]) > 2)
        ):
            start += len(words[0]) + 1
            words.pop(0)
        while words and words[-1].lower() in _STOP:
            end -= len(words[-1]) + 1
            words.pop()
        if not words or (len(words) == 1 and len(words[0]) < 2):
            return None, end
        return start, end


_MONTHS = (
    r"jan(?:uary|uar|vier)?|feb(?:ruary|ruar)?|févr(?:ier)?|fév|mar(?:ch|s)?|märz|apr(?:il)?|"
    r"avr(?:il)?|may|mai|jun[ei]?|juin|jul[iy]?|juil(?:let)?|aug(?:ust)?|août|sep(?:t(?:ember|"
    r"embre)?)?|oct(?:ober|obre)?|okt(?:ober)?|nov(?:ember|embre)?|dec(?:ember)?|dez(?:ember)?|"
    r"déc(?:embre)?"
)
_MONTH_NUM = {
    "jan": 1, "feb": 2, "fév": 2, "fev": 2, "mar": 3, "mär": 3, "apr": 4, "avr": 4, "may": 5,
    "mai": 5, "jun": 6, "jui": 6, "jul": 7, "aug": 8, "aoû": 8, "sep": 9, "oct": 10, "okt": 10,
    "nov": 11, "dec": 12, "dez": 12, "déc": 12,
}  # fmt: skip
_BIRTH_CUE = re.compile(
    r"date of birth|birth ?date|d\.?o\.?b\b\.?|born(?: on)?|birthday|geburtsdatum|"
    r"geb\.?-?datum|geburtstag|geboren(?: am)?|geb\.|date de naissance|née? le|naissance"
)
_BIRTH_DATE = re.compile(
    r"[\s:,\-\u2013]{0,4}(?:(?:on|am|le|is|was|ist|est|war)\s(?:(?:on|am|le)\s)?)?"
    rf"(\d{{4}}-\d{{1,2}}-\d{{1,2}}|\d{{1,2}}[./-]\d{{1,2}}[./-](?:\d{{4}}|\d{{2}})"
    rf"|\d{{1,2}}[-. ](?:{_MONTHS})[-. ]\d{{4}}"
    rf"|\d{{1,2}}(?:st|nd|rd|th|er)?\.? (?:{_MONTHS})\.? \d{{4}}"
    rf"|(?:{_MONTHS})\.? \d{{1,2}}(?:st|nd|rd|th)?,? \d{{4}})(?!\d)",
    re.IGNORECASE,
)
_BIRTH_WORDS = ("birth", "dob", "d.o.b", "born", "geburt", "geboren", "geb.", "naissance", "né")


def _parse_date(value: str) -> bool:
    nums = [int(n) for n in re.findall(r"\d+", value)]
    if re.match(r"\d{4}-", value):
        return plausible_birth_date(nums[0], nums[1], nums[2])
    words = re.findall(rf"(?i){_MONTHS}", value)
    if words:
        month = _MONTH_NUM.get(words[0].lower()[:3], 0)
        day = nums[0]
        return plausible_birth_date(nums[-1], month, day)
    day, month, year = nums
    if year < 100:  # two-digit year: the most recent past century that fits
        year += 2000 if year <= date.today().year % 100 else 1900
    return plausible_birth_date(year, month, day) or plausible_birth_date(year, day, month)


class BirthDateRecognizer(Recognizer):
    """Dates right after a birth word ("DOB", "born", "geboren am", "né le", ...)."""

    name = "date_of_birth"
    types = frozenset({"DATE_OF_BIRTH"})

    def find(self, text: str) -> Iterator[Entity]:
        """Yield each plausible date (1900 to today) introduced by a birth word."""
        lowered = text.lower()
        if len(lowered) != len(text) or not any(w in lowered for w in _BIRTH_WORDS):
            if len(lowered) == len(text):
                return
            lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
        for cue in _BIRTH_CUE.finditer(lowered):
            if cue.start() and lowered[cue.start() - 1].isalnum():
                continue
            m = _BIRTH_DATE.match(text, cue.end())
            if m is not None and _parse_date(m.group(1)):
                yield Entity(m.start(1), m.end(1), "DATE_OF_BIRTH", 0.9, self.name)
