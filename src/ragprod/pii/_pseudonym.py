"""Operators (mask, redact, replace, hash, pseudonymize) and restoring pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable

__all__ = ["OPERATORS", "Pseudonyms", "StreamRestorer", "type_prefix"]

#: The operator names :class:`PIIAnonymizer` accepts.
OPERATORS = ("hash", "mask", "pseudonymize", "redact", "replace")

EMAIL_SUFFIX = "@example.invalid"
_HEX = frozenset("0123456789abcdef")
TAG_LEN = 12

Lookup = Callable[[str], "str | None"]


def type_prefix(entity_type: str) -> str:
    """The prefix of an entity type's pseudonyms (``"email"`` for e-mail, else the type)."""
    if entity_type == "EMAIL_ADDRESS":
        return "email"
    cleaned = re.sub(r"[^A-Z0-9_]", "_", entity_type.upper()).strip("_")
    return cleaned if cleaned[:1].isalpha() else "X" + cleaned


class Pseudonyms:
    """Keyed, format-aware pseudonyms and the inverse search for them.

    A pseudonym is ``<TYPE>_<12 hex>`` (``PERSON_3f9a2c1b7d0e``), or for
    e-mail ``email_<12 hex>@example.invalid`` so it stays e-mail-shaped; the
    hex is ``HMAC-SHA256(key, type + value)``: the same value under the same key
    always gets the same pseudonym, in any process.
    """

    def __init__(self, key: bytes, types: Iterable[str]) -> None:
        self._key = key
        self._cache: dict[tuple[str, str, int], str] = {}
        prefixes = sorted({type_prefix(t) for t in types}, key=len, reverse=True)
        self.prefixes = tuple(prefixes)
        body = "|".join(re.escape(p) for p in prefixes) or "(?!)"
        self.finder = re.compile(rf"(?:{body})_[0-9a-f]{{{TAG_LEN}}}(?:{re.escape(EMAIL_SUFFIX)})?")
        self.max_len = max((len(p) for p in prefixes), default=1) + 1 + TAG_LEN + len(EMAIL_SUFFIX)

    def digest(self, entity_type: str, value: str, round: int = 0) -> str:
        """The keyed hex digest of ``value`` as ``entity_type`` (``round`` re-keys on collision)."""
        message = f"{round}\x1f{entity_type}\x1f{value}".encode("utf-8", "surrogatepass")
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def make(self, entity_type: str, value: str, round: int = 0) -> str:
        """The pseudonym of ``value`` as ``entity_type``."""
        cache_key = (entity_type, value, round)
        cached = self._cache.get(cache_key)
        if cached is not None:
            return cached
        alias = self._make(entity_type, value, round)
        if len(self._cache) >= 4096:
            self._cache.clear()
        self._cache[cache_key] = alias
        return alias

    def _make(self, entity_type: str, value: str, round: int) -> str:
        tag = self.digest(entity_type, value, round)[:TAG_LEN]
        prefix = type_prefix(entity_type)
        if prefix == "email":
            return f"email_{tag}{EMAIL_SUFFIX}"
        return f"{prefix}_{tag}"

    def operate(self, operator: str, entity_type: str, value: str) -> str:
        """The replacement text for the irreversible operators."""
        if operator == "mask":
            return "*" * len(value)
        if operator == "redact":
            return ""
        if operator == "replace":
            return f"<{entity_type}>"
        if operator == "hash":
            return f"<{entity_type}:{self.digest(entity_type, value)[:16]}>"
        raise ValueError(f"unknown operator {operator!r}")

    def restore(self, text: str, lookup: Lookup) -> str:
        """``text`` with every known pseudonym replaced by its original."""
        if "_" not in text:
            return text

        def repl(m: re.Match[str]) -> str:
            found = m.group()
            original = lookup(found)
            return found if original is None else original

        return self.finder.sub(repl, text)

    def partial(self, s: str) -> bool:
        """Whether ``s`` could still grow into a pseudonym (a proper prefix of one)."""
        for prefix in self.prefixes:
            head = prefix + "_"
            if len(s) <= len(head):
                if head.startswith(s):
                    return True
                continue
            if not s.startswith(head):
                continue
            rest = s[len(head) :]
            tag = rest[:TAG_LEN]
            if not _HEX.issuperset(tag):
                continue
            if len(rest) < TAG_LEN:
                return True
            tail = rest[TAG_LEN:]
            if (
                prefix == "email"
                and len(tail) < len(EMAIL_SUFFIX)
                and EMAIL_SUFFIX.startswith(tail)
            ):
                return True
        return False


class StreamRestorer:
    """Restores pseudonyms in a stream of text chunks, never emitting half a pseudonym.

    ``feed`` returns what can safely be shown now; a trailing piece that might
    be the beginning of a pseudonym is held back until the next chunk decides
    it. ``flush`` returns the rest at the end of the stream. Concatenating all
    outputs equals restoring the whole text at once.

    Example:
        >>> p = Pseudonyms(b"k" * 32, ["PERSON"])
        >>> alias = p.make("PERSON", "Ana")
        >>> r = StreamRestorer(p, {alias: "Ana"}.get)
        >>> r.feed("Hi " + alias[:5]) + r.feed(alias[5:] + "!") + r.flush()
        'Hi Ana!'
    """

    def __init__(self, pseudonyms: Pseudonyms, lookup: Lookup) -> None:
        self._p = pseudonyms
        self._lookup = lookup
        self._buffer = ""

    def feed(self, chunk: str) -> str:
        """Add ``chunk``; return the restored text that is safe to emit now."""
        buffer = self._buffer + chunk
        cut = self._cut(buffer)
        self._buffer = buffer[cut:]
        return self._p.restore(buffer[:cut], self._lookup) if cut else ""

    def flush(self) -> str:
        """Return whatever is still held back, restored."""
        rest, self._buffer = self._buffer, ""
        return self._p.restore(rest, self._lookup)

    def _cut(self, buffer: str) -> int:
        """The end of the safe part: before the earliest suffix that may be a pseudonym."""
        n = len(buffer)
        first = max(0, n - self._p.max_len)
        starts = {p[0] for p in self._p.prefixes}
        for i in range(first, n):
            if buffer[i] in starts and self._p.partial(buffer[i:]):
                cut = i
                break
        else:
            cut = n
        # Never cut through a complete pseudonym (possible with overlapping type names).
        for m in self._p.finder.finditer(buffer, max(0, cut - self._p.max_len)):
            if m.start() < cut < m.end():
                return m.start()
        return cut
