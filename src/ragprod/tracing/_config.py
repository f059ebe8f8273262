"""``Tracing``: the tracing layer's configuration."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from opentelemetry.trace import TracerProvider

from ragprod.errors import ConfigurationError
from ragprod.logging._processors import scrub_text

__all__ = ["Tracing"]


@dataclass(frozen=True, slots=True)
class Tracing:
    """How the tracing layer records a query: pass it to ``harden(tracing=...)``.

    ``harden(tracing=True)`` means ``Tracing()``: spans on the global tracer
    provider (ragprod never sets it), no content in spans, one log event per
    query.

    Args:
        tracer_provider: where spans go; ``None`` uses the global provider at
            call time (a no-op until the application configures one).
        capture_content: put the query, the answer and the retrieved node texts
            on spans (and the query in the log event). Off by default: they are
            user content.
        max_attribute_chars: captured text is cut to this many characters
            (and marked ``...[truncated]``).
        scrubber: applied to captured text and to exception messages recorded on
            spans; the built-in regex scrubber by default, ``None`` to turn it off,
            or any ``str -> str`` function (for example a ``ragprod.pii``
            anonymizer's masking function).
        prices: model name -> (USD per 1M input tokens, USD per 1M output
            tokens), for the ``ragprod_llm_cost_usd_total`` counter.
        log_events: emit ``ragprod.query.completed`` / ``ragprod.query.failed``.
        clock: the monotonic clock durations are measured with.

    Raises:
        ConfigurationError: ``max_attribute_chars`` is smaller than 16.

    Example:
        >>> from ragprod.tracing import Tracing
        >>> Tracing(capture_content=True, max_attribute_chars=256).max_attribute_chars
        256
    """

    tracer_provider: TracerProvider | None = None
    capture_content: bool = False
    max_attribute_chars: int = 1024
    scrubber: Callable[[str], str] | None = scrub_text
    prices: Mapping[str, tuple[float, float]] | None = None
    log_events: bool = True
    clock: Callable[[], float] = field(default=time.perf_counter, repr=False)

    def __post_init__(self) -> None:
        chars = self.max_attribute_chars
        if isinstance(chars, bool) or not isinstance(chars, int) or chars < 16:
            raise ConfigurationError(["tracing: max_attribute_chars must be an integer >= 16"])
