"""``PIIAnonymizer``: detect PII, replace it, and restore pseudonyms later."""

from __future__ import annotations

import asyncio
import bisect
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics
from ragprod.pii._builtin import (
    EmailRecognizer,
    IbanRecognizer,
    IpRecognizer,
    SecretRecognizer,
    credit_card_recognizer,
    de_tax_id_recognizer,
    nino_recognizer,
    ssn_recognizer,
    url_credentials_recognizer,
)
from ragprod.pii._entity import AnonymizedText, Entity
from ragprod.pii._person import BirthDateRecognizer, PersonRecognizer
from ragprod.pii._phone import PhoneRecognizer
from ragprod.pii._pseudonym import OPERATORS, Pseudonyms, StreamRestorer
from ragprod.pii._recognizer import PatternRecognizer, Recognizer
from ragprod.pii._vault import Vault

__all__ = ["DEFAULT_TYPES", "PIIAnonymizer", "default_recognizers"]

#: The entity types the built-in recognizers find.
DEFAULT_TYPES = (
    "CREDIT_CARD", "DATE_OF_BIRTH", "DE_TAX_ID", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS",
    "PERSON", "PHONE_NUMBER", "SECRET", "UK_NINO", "URL_CREDENTIALS", "US_SSN",
)  # fmt: skip

_THREAD_THRESHOLD = 64 * 1024  # async forms move texts longer than this off the event loop


def default_recognizers(language_hints: Sequence[str] = ("en", "de", "fr")) -> list[Recognizer]:
    """The built-in recognizers, one per type (phone regions from ``language_hints``)."""
    return [
        EmailRecognizer(),
        url_credentials_recognizer(),
        SecretRecognizer(),
        IbanRecognizer(),
        credit_card_recognizer(),
        ssn_recognizer(),
        nino_recognizer(),
        de_tax_id_recognizer(),
        IpRecognizer(),
        PhoneRecognizer(language_hints),
        BirthDateRecognizer(),
        PersonRecognizer(),
    ]


# One random key per process when none is configured: every anonymizer of the process
# (ingestion transform, query engine, postprocessor) then agrees on pseudonyms.
_PROCESS_KEY = secrets.token_bytes(32)
# Likewise one in-memory vault for every anonymizer created without one, so an answer
# engine restores what an ingestion transform of the same process pseudonymized.
_PROCESS_VAULT = Vault()


def _resolve_key(key: bytes | str | None) -> bytes:
    if key is None:
        env = os.environ.get("RAGPROD_PII_KEY")
        if not env:
            return _PROCESS_KEY
        key = env
    raw = key.encode("utf-8") if isinstance(key, str) else bytes(key)
    if len(raw) < 16:
        raise ConfigurationError("pii key must be at least 16 bytes")
    return raw


def _to_original(pos: int, regions: list[tuple[int, int, int, int]]) -> int:
    """Map an offset of the current text (outside replaced regions) to the original text."""
    for cur_start, cur_end, orig_start, orig_end in regions:
        if cur_end > pos:
            break
        pos += (orig_end - orig_start) - (cur_end - cur_start)
    return pos


def _shift(
    regions: list[tuple[int, int, int, int]],
    replaced: list[Entity],
    added: list[tuple[int, int, int, int]],
) -> list[tuple[int, int, int, int]]:
    """Move earlier regions to the coordinates of the text after ``replaced`` -> ``added``;
    ``added`` gets original offsets."""
    out = []
    for cur_start, cur_end, orig_start, orig_end in regions:
        delta = sum(
            (ns_end - ns_start) - (e.end - e.start)
            for e, (ns_start, ns_end, _, _) in zip(replaced, added, strict=True)
            if e.end <= cur_start
        )
        out.append((cur_start + delta, cur_end + delta, orig_start, orig_end))
    for k, (ns_start, ns_end, old_start, old_end) in enumerate(added):
        added[k] = (ns_start, ns_end, _to_original(old_start, regions),
                    _to_original(old_end, regions))  # fmt: skip
    return out


class PIIAnonymizer:
    """Finds PII in text and masks, hashes or pseudonymizes it, reversibly if you like.

    Detection is rule-based and offline: patterns find candidates, validators
    (Luhn, mod-97, SSN rules, ``phonenumbers``, entropy) reject look-alikes,
    and context words raise or lower a score; entities scoring at least
    ``min_score`` are kept, overlaps resolved in favour of the higher score and
    then the longer span.

    The default operator, ``"pseudonymize"``, replaces each value with a keyed
    pseudonym (``PERSON_3f9a2c1b7d0e``, ``email_5c0e...@example.invalid``): the
    same value under the same key always gets the same pseudonym, in any
    process, so cache keys still match and an LLM can still refer to "the same
    person". Pseudonyms go into :attr:`AnonymizedText.mapping` and the
    :class:`Vault`; :meth:`deanonymize` puts the originals back.

    Args:
        entities: the types to detect (default: every type the recognizers find).
        operator: ``"pseudonymize"``, ``"mask"``, ``"redact"``, ``"replace"``
            (``<EMAIL_ADDRESS>``) or ``"hash"`` (``<EMAIL_ADDRESS:9f86d081...>``);
            or a mapping of type to operator (``"*"`` for the rest).
        vault: where pseudonyms are remembered (default: the process's in-memory
            :class:`Vault`).
        key: the HMAC key for pseudonyms and hashes, at least 16 bytes. Default:
            ``RAGPROD_PII_KEY`` from the environment, else a random per-process
            key (pseudonyms then differ between processes).
        allow: values never treated as PII (compared case-insensitively).
        deny: values always treated as PII: strings (type ``"DENY_LIST"``) or a
            mapping of type to strings.
        recognizers: extra :class:`Recognizer` objects (e.g. your own ids).
        language_hints: languages or locales whose phone formats to accept.
        min_score: the lowest score kept.
        metrics: counts ``ragprod_pii_entities_total{type}`` (type only, never values).

    Raises:
        ConfigurationError: an unknown operator or a key shorter than 16 bytes.

    Example:
        >>> pii = PIIAnonymizer(key=b"0123456789abcdef0123456789abcdef")
        >>> out = pii.anonymize("Mail ana.lima@example.org or call +44 20 7946 0958.")
        >>> out.text
        'Mail email_...@example.invalid or call PHONE_NUMBER_....'
        >>> pii.deanonymize(out.text)
        'Mail ana.lima@example.org or call +44 20 7946 0958.'
    """

    def __init__(
        self,
        *,
        entities: Iterable[str] | None = None,
        operator: str | Mapping[str, str] = "pseudonymize",
        vault: Vault | None = None,
        key: bytes | str | None = None,
        allow: Iterable[str] = (),
        deny: Iterable[str] | Mapping[str, Iterable[str]] = (),
        recognizers: Iterable[Recognizer] = (),
        language_hints: Sequence[str] = ("en", "de", "fr"),
        min_score: float = 0.5,
        metrics: RagMetrics | None = None,
    ) -> None:
        ops = {"*": operator} if isinstance(operator, str) else dict(operator)
        ops.setdefault("*", "pseudonymize")
        bad = sorted(op for op in ops.values() if op not in OPERATORS)
        if bad:
            raise ConfigurationError(f"unknown pii operator; choose one of {', '.join(OPERATORS)}")
        self._operators = ops
        self.entities: frozenset[str] | None = frozenset(entities) if entities is not None else None
        all_recognizers = [*default_recognizers(language_hints), *recognizers]
        deny_map = {"DENY_LIST": list(deny)} if not isinstance(deny, Mapping) else dict(deny)
        for entity_type, words in deny_map.items():
            listed = [w for w in words if w]
            if listed:
                alternatives = "|".join(re.escape(w) for w in sorted(listed, key=len, reverse=True))
                all_recognizers.append(
                    PatternRecognizer(
                        entity_type,
                        re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE),
                        score=1.0,
                        name="deny_list",
                    )
                )
        self.recognizers: tuple[Recognizer, ...] = tuple(
            r for r in all_recognizers if self.entities is None or r.types & self.entities
        )
        self.types: frozenset[str] = frozenset().union(*(r.types for r in self.recognizers))
        if self.entities is not None:
            self.types &= self.entities
        self.allow = frozenset(a.casefold() for a in allow)
        self.min_score = min_score
        self.language_hints = tuple(language_hints)
        self._key = _resolve_key(key)
        self._pseudonyms = Pseudonyms(self._key, self.types | set(DEFAULT_TYPES))
        self.vault = vault if vault is not None else _PROCESS_VAULT
        self.bind_metrics(metrics or RagMetrics(), vault=vault is not None and metrics is not None)

    def bind_metrics(self, metrics: RagMetrics, *, vault: bool = True) -> None:
        """Count entities (and, with ``vault``, vault store errors) on ``metrics`` from now on."""
        self.metrics = metrics
        self._found = metrics.counter(
            "ragprod_pii_entities_total", "PII entities found, by type.", ("type",)
        )
        self._children: dict[str, Any] = {}
        if vault:
            self.vault.bind_metrics(metrics)

    def _count(self, entities: Sequence[Entity]) -> None:
        counts: dict[str, int] = {}
        for e in entities:
            counts[e.type] = counts.get(e.type, 0) + 1
        for entity_type, n in counts.items():
            child = self._children.get(entity_type)
            if child is None:
                child = self._children[entity_type] = self._found.labels(type=entity_type)
            child.inc(n)

    # -- detection ---------------------------------------------------------------------------

    def analyze(self, text: str) -> list[Entity]:
        """The PII entities in ``text``, non-overlapping, sorted by offset.

        Raises:
            TypeError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        return self._resolve(text)[0]

    def _resolve(
        self, text: str, protected: Sequence[tuple[int, int]] = ()
    ) -> tuple[list[Entity], bool]:
        """Kept entities, and whether a dropped candidate stuck out of a kept one.

        Candidates overlapping an existing pseudonym or a ``protected`` span are dropped.
        """
        if not text:
            return [], False
        candidates = [
            e
            for r in self.recognizers
            for e in r.find(text)
            if e.score >= self.min_score and e.type in self.types
        ]
        if not candidates:
            return [], False
        taken = (
            [(m.start(), m.end()) for m in self._pseudonyms.finder.finditer(text)]
            if "_" in text
            else []
        )
        candidates.sort(key=lambda e: (-e.score, e.start - e.end, e.start))
        spans: list[tuple[int, int]] = sorted([*taken, *(p for p in protected if p[0] < p[1])])
        starts: list[int] = [s for s, _ in spans]
        kept: list[Entity] = []
        partial = False
        for e in candidates:
            i = bisect.bisect_left(starts, e.end)
            if i and spans[i - 1][1] > e.start:
                # overlaps a span already kept (or an existing pseudonym); if it sticks out,
                # what is left of it may be found again once the winner is replaced
                partial = partial or spans[i - 1][0] - e.start > 1 or e.end - spans[i - 1][1] > 1
                continue
            if self.allow and text[e.start : e.end].casefold() in self.allow:
                continue
            starts.insert(i, e.start)
            spans.insert(i, (e.start, e.end))
            kept.append(e)
        kept.sort()
        return kept, partial

    def analyze_batch(self, texts: Iterable[str]) -> list[list[Entity]]:
        """:meth:`analyze` for each text."""
        return [self.analyze(t) for t in texts]

    # -- anonymizing -------------------------------------------------------------------------

    def anonymize(self, text: str) -> AnonymizedText:
        """``text`` with its PII replaced by the configured operator.

        Returns:
            the new text, the entities (offsets into ``text``) and, for
            pseudonyms, the pseudonym -> original mapping (also stored in the vault).

        Raises:
            TypeError: ``text`` is not a string.
        """
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        entities, partial = self._resolve(text)
        if not entities:
            return AnonymizedText(text, (), {})
        mapping: dict[str, str] = {}
        current, regions = self._replace(text, entities, mapping)
        found = list(entities)
        for _ in range(2):
            # Rare: a losing candidate stuck out of the winner, so its rest may now be PII
            # on its own. Re-analyze so that anonymize(anonymize(x).text) changes nothing.
            if not partial:
                break
            more, partial = self._resolve(current, [(cs, ce) for cs, ce, _, _ in regions])
            if not more:
                break
            for e in more:
                start, end = _to_original(e.start, regions), _to_original(e.end, regions)
                # (with "redact" a new entity can span a removed one: report it only if
                # its original span is still free; its text is replaced either way)
                if start < end and not any(f.start < end and start < f.end for f in found):
                    found.append(Entity(start, end, e.type, e.score, e.recognizer))
            current, added = self._replace(current, more, mapping)
            regions = sorted(_shift(regions, more, added) + added)
        found.sort()
        self._count(found)
        return AnonymizedText(current, tuple(found), mapping)

    def _replace(
        self, text: str, entities: list[Entity], mapping: dict[str, str]
    ) -> tuple[str, list[tuple[int, int, int, int]]]:
        """Apply the operators; return the new text and, per entity, (new start, new end,
        old start, old end)."""
        parts: list[str] = []
        regions: list[tuple[int, int, int, int]] = []
        pos = length = 0
        for e in entities:
            value = text[e.start : e.end]
            op = self._operators.get(e.type, self._operators["*"])
            if op == "pseudonymize":
                replacement = self._pseudonymize(e.type, value, mapping)
            else:
                replacement = self._pseudonyms.operate(op, e.type, value)
            parts.append(text[pos : e.start])
            length += e.start - pos
            regions.append((length, length + len(replacement), e.start, e.end))
            parts.append(replacement)
            length += len(replacement)
            pos = e.end
        parts.append(text[pos:])
        return "".join(parts), regions

    def _pseudonymize(self, entity_type: str, value: str, mapping: dict[str, str]) -> str:
        for round in range(16):
            alias = self._pseudonyms.make(entity_type, value, round)
            held = mapping.get(alias)
            if held == value:
                return alias
            if held is None and self.vault.put(alias, value):
                mapping[alias] = value
                return alias
        raise RuntimeError("could not find a free pseudonym")  # pragma: no cover - 2**-700

    def anonymize_batch(self, texts: Iterable[str]) -> list[AnonymizedText]:
        """:meth:`anonymize` for each text."""
        return [self.anonymize(t) for t in texts]

    def pseudonym(self, entity_type: str, value: str) -> str:
        """The pseudonym ``value`` gets as ``entity_type`` under this key (nothing stored)."""
        return self._pseudonyms.make(entity_type, value)

    def fingerprint(self) -> str:
        """A short id of this configuration (key, operators, types); reveals nothing of the key."""
        config = f"{sorted(self._operators.items())}|{sorted(self.types)}|{self.min_score}"
        return self._pseudonyms.digest("FINGERPRINT", config)[:16]

    def scrub(self, text: str) -> str:
        """``text`` with PII replaced by type labels (``<EMAIL_ADDRESS>``): for logs and spans."""
        entities = self.analyze(text)
        out, pos = [], 0
        for e in entities:
            out += [text[pos : e.start], f"<{e.type}>"]
            pos = e.end
        out.append(text[pos:])
        return "".join(out)

    # -- restoring ---------------------------------------------------------------------------

    def _lookup(self, mapping: Mapping[str, str] | None) -> Any:
        if mapping is None:
            return self.vault.get
        vault_get = self.vault.get

        def lookup(alias: str) -> str | None:
            found = mapping.get(alias)
            return found if found is not None else vault_get(alias)

        return lookup

    def deanonymize(self, text: str, mapping: Mapping[str, str] | None = None) -> str:
        """``text`` with pseudonyms replaced by their originals.

        Args:
            text: text holding pseudonyms (an LLM answer, a stored document...).
            mapping: the pseudonym -> original mapping to use first
                (:attr:`AnonymizedText.mapping`); the vault is consulted for the rest.
        """
        if not isinstance(text, str):
            raise TypeError(f"expected str, got {type(text).__name__}")
        return self._pseudonyms.restore(text, self._lookup(mapping))

    def restore_function(self, mapping: Mapping[str, str] | None = None) -> Callable[[str], str]:
        """:meth:`deanonymize` with ``mapping`` bound, for restoring many strings of one answer."""
        lookup = self._lookup(mapping)
        restore = self._pseudonyms.restore

        def restore_text(text: str) -> str:
            return restore(text, lookup)

        return restore_text

    def restorer(self, mapping: Mapping[str, str] | None = None) -> StreamRestorer:
        """A :class:`StreamRestorer` for a streamed answer (holds back split pseudonyms)."""
        return StreamRestorer(self._pseudonyms, self._lookup(mapping))

    # -- async forms -------------------------------------------------------------------------

    async def aanalyze(self, text: str) -> list[Entity]:
        """:meth:`analyze`; long texts run in a worker thread."""
        if isinstance(text, str) and len(text) > _THREAD_THRESHOLD:
            return await asyncio.to_thread(self.analyze, text)
        return self.analyze(text)

    async def aanonymize(self, text: str) -> AnonymizedText:
        """:meth:`anonymize`; long texts (or a vault with a store) use a worker thread."""
        if isinstance(text, str) and (
            len(text) > _THREAD_THRESHOLD or self.vault.store is not None
        ):
            return await asyncio.to_thread(self.anonymize, text)
        return self.anonymize(text)

    async def adeanonymize(self, text: str, mapping: Mapping[str, str] | None = None) -> str:
        """:meth:`deanonymize`; in a worker thread when the vault has a shared store."""
        if self.vault.store is not None:
            return await asyncio.to_thread(self.deanonymize, text, mapping)
        return self.deanonymize(text, mapping)

    async def aanonymize_batch(self, texts: Iterable[str]) -> list[AnonymizedText]:
        """:meth:`anonymize_batch` in a worker thread."""
        return await asyncio.to_thread(self.anonymize_batch, list(texts))

    def __repr__(self) -> str:
        return (
            f"PIIAnonymizer(types={sorted(self.types)}, operator={self._operators['*']!r}, "
            f"recognizers={len(self.recognizers)}, vault={self.vault!r})"
        )
