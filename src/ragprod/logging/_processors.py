"""structlog processors: trace context and PII scrubbing."""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from typing import Any

from opentelemetry import trace

__all__ = ["add_trace_context", "make_pii_scrubber", "scrub_pii", "scrub_text"]

EventDict = MutableMapping[str, Any]

# Ordered: the most specific patterns first, so a card number is not half
# eaten by the phone pattern.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "<EMAIL>"),
    (re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"), "<IBAN>"),
    (re.compile(r"\b(?:\d[ -]?){12,18}\d\b"), "<CARD>"),
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "<SSN>"),
    (re.compile(r"(?<![\w.])\+?\d[\d ().-]{7,}\d\b"), "<PHONE>"),
    (re.compile(r"\b(?:\d{1,3}\.){3}\d{1,3}\b"), "<IP>"),
)
_DIGIT_OR_AT = re.compile(r"[\d@]")

#: Keys whose values are identifiers ragprod itself produces; never scrubbed.
_SKIP_KEYS = frozenset({"trace_id", "span_id", "timestamp", "level", "logger"})


def scrub_text(text: str) -> str:
    """Replace e-mail addresses, IBANs, card, social security and phone numbers, IPs.

    A fast, dependency-free baseline: text without a digit or an ``@`` is
    returned as is. For names and addresses plug a real recognizer in with
    :func:`make_pii_scrubber` (for example ``ragprod.pii``'s anonymizer).

    Example:
        >>> scrub_text("mail jane.doe@example.com or call +1 415 555 0100")
        'mail <EMAIL> or call <PHONE>'
    """
    if not _DIGIT_OR_AT.search(text):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_value(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        try:
            return scrub(value)
        except Exception:
            return "[withheld: scrubber failed]"  # never the raw value, never an error
    if isinstance(value, (list, tuple)):
        return type(value)(_scrub_value(item, scrub) for item in value)
    if isinstance(value, dict):
        return {key: _scrub_value(item, scrub) for key, item in value.items()}
    return value


def make_pii_scrubber(
    scrub: Callable[[str], str] = scrub_text,
) -> Callable[[Any, str, EventDict], EventDict]:
    """A structlog processor that passes every string value through ``scrub``.

    Nested lists, tuples and dicts are walked; trace and span ids, the level,
    logger name and timestamp are left alone. If ``scrub`` raises, the value is
    withheld (``[withheld: scrubber failed]``): logging never fails a request
    and never falls back to the raw text.

    Example:
        >>> processor = make_pii_scrubber(lambda s: s.replace("Jane", "<NAME>"))
        >>> processor(None, "info", {"event": "hi", "who": "Jane"})["who"]
        '<NAME>'
    """

    def processor(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
        for key, value in event_dict.items():
            if key not in _SKIP_KEYS:
                event_dict[key] = _scrub_value(value, scrub)
        return event_dict

    return processor


scrub_pii = make_pii_scrubber()
scrub_pii.__doc__ = """structlog processor: scrub PII out of every string value of the event.

Uses :func:`scrub_text` (e-mails, IBANs, card, SSN and phone numbers, IPs).

Example:
    >>> scrub_pii(None, "info", {"event": "login", "user": "jane@example.com"})
    {'event': 'login', 'user': '<EMAIL>'}
"""


def add_trace_context(logger: Any, method_name: str, event_dict: EventDict) -> EventDict:
    """structlog processor: add ``trace_id``/``span_id`` of the current OTel span.

    Ids are lowercase hex (32 and 16 characters), as in W3C ``traceparent``, so
    a log line can be looked up in any tracing backend. Events that already
    carry a ``trace_id`` (ragprod's own events, logged after their span ended)
    and events outside any span are left as they are.

    Example:
        >>> add_trace_context(None, "info", {"event": "outside any span"})
        {'event': 'outside any span'}
    """
    if "trace_id" in event_dict:
        return event_dict
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event_dict["trace_id"] = format(context.trace_id, "032x")
        event_dict["span_id"] = format(context.span_id, "016x")
    return event_dict
