"""``configure_logging``: structlog JSON lines with trace ids, PII scrubbed."""

from __future__ import annotations

import logging as _stdlib_logging
import sys
from collections.abc import Callable
from typing import Any, TextIO

import structlog

from ragprod.errors import ConfigurationError
from ragprod.logging._processors import add_trace_context, make_pii_scrubber, scrub_text

__all__ = ["configure_logging"]


def _level_number(level: str | int) -> int:
    if isinstance(level, int) and not isinstance(level, bool):
        return level
    if isinstance(level, str):
        number = _stdlib_logging.getLevelName(level.upper())
        if isinstance(number, int):
            return number
    raise ConfigurationError([f"unknown log level {level!r}"])


def configure_logging(
    json: bool = True,
    level: str | int = "INFO",
    scrub_pii: bool | Callable[[str], str] = True,
    *,
    stream: TextIO | None = None,
    cache_loggers: bool = False,
) -> None:
    """Configure structlog for ragprod-style logs: one JSON object per line.

    Every event gets an ISO-8601 UTC ``timestamp``, its ``level``, the
    ``trace_id``/``span_id`` of the current OpenTelemetry span, context bound
    with ``structlog.contextvars``, and has PII scrubbed out of its string
    values. ragprod's own events are named ``ragprod.<area>.<event>`` (for
    example ``ragprod.query.completed``).

    ragprod never calls this itself: importing or using ragprod does not change
    an application's logging. Call it once at startup if you want these logs;
    it configures structlog globally and leaves the standard library's
    ``logging`` alone.

    Args:
        json: JSON lines (``True``) or structlog's plain console format.
        level: the lowest level emitted (``"DEBUG"``, ``"INFO"``, ... or a number).
        scrub_pii: ``True`` for the built-in scrubber (e-mails, IBANs, card,
            SSN and phone numbers, IPs), ``False`` to turn it off, or a
            function ``str -> str`` (for example a ``ragprod.pii`` anonymizer's
            masking function).
        stream: where lines go (``sys.stdout`` by default).
        cache_loggers: structlog's ``cache_logger_on_first_use``: each logger
            is built once, which saves a few microseconds per event in
            production; leave it off where logging is reconfigured later
            (tests), since cached loggers keep the old configuration.

    Raises:
        ConfigurationError: ``level`` is not a known level.

    Example:
        >>> import io, structlog
        >>> out = io.StringIO()
        >>> configure_logging(stream=out)
        >>> structlog.get_logger().info("ragprod.demo.hello", user="jane@example.com")
        >>> '"user": "<EMAIL>"' in out.getvalue()
        True
        >>> structlog.reset_defaults()
    """
    number = _level_number(level)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_context,
    ]
    if scrub_pii:
        scrub = scrub_pii if callable(scrub_pii) else scrub_text
        processors.append(make_pii_scrubber(scrub))
    processors.append(structlog.processors.format_exc_info)
    if json:
        processors.append(structlog.processors.JSONRenderer())
    else:
        processors.append(structlog.dev.ConsoleRenderer(colors=False))
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stdout),
        cache_logger_on_first_use=cache_loggers,
    )
