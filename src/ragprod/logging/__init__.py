"""Structured logs for ragprod: structlog JSON lines with trace ids, PII scrubbed.

- :func:`configure_logging`: one call to get JSON lines with ISO timestamps,
  ``trace_id``/``span_id`` and PII scrubbing (only when you call it).
- :func:`add_trace_context`, :func:`scrub_pii`: the processors, to add to a
  structlog configuration of your own.

Example:
    >>> import io, structlog
    >>> from ragprod.logging import configure_logging
    >>> out = io.StringIO()
    >>> configure_logging(stream=out, level="INFO")
    >>> structlog.get_logger().info("ragprod.demo.started")
    >>> '"event": "ragprod.demo.started"' in out.getvalue()
    True
    >>> structlog.reset_defaults()
"""

from ragprod.logging._config import configure_logging
from ragprod.logging._processors import (
    add_trace_context,
    make_pii_scrubber,
    scrub_pii,
    scrub_text,
)

__all__ = ["add_trace_context", "configure_logging", "make_pii_scrubber", "scrub_pii", "scrub_text"]
