"""``ragprod.harden``: every layer around an index or engine, in one call."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.indices.base import BaseIndex

from ragprod._pipeline import QueryStep, StepQueryEngine
from ragprod.errors import ConfigurationError
from ragprod.metrics import RagMetrics

__all__ = ["LAYERS", "HardenedQueryEngine", "harden"]

#: The layers ``harden`` composes, outermost first, and the package of each.
LAYERS: tuple[tuple[str, str], ...] = (
    ("tracing", "ragprod.tracing"),
    ("guard", "ragprod.guard"),
    ("pii", "ragprod.pii"),
    ("cache", "ragprod.cache"),
    ("resilience", "ragprod.resilience"),
)


def _step_factory(package: str) -> Callable[..., QueryStep] | None:
    try:
        module = importlib.import_module(f"{package}._step")
    except ModuleNotFoundError as exc:
        if exc.name in (package, f"{package}._step"):
            return None
        raise
    factory: Callable[..., QueryStep] = module.make_step
    return factory


class HardenedQueryEngine(StepQueryEngine):
    """The engine ``harden`` returns: one shell around every enabled layer.

    It is a ``BaseQueryEngine``; ``repr()`` shows the stack, ``metrics`` the
    shared :class:`~ragprod.metrics.RagMetrics`, ``layers`` the step objects.
    """

    def __init__(
        self, engine: BaseQueryEngine, steps: list[QueryStep], *, metrics: RagMetrics, name: str
    ) -> None:
        super().__init__(engine, steps)
        self.metrics = metrics
        self.name = name

    @property
    def layers(self) -> dict[str, QueryStep]:
        """The enabled layers by name, outermost first."""
        return {step.name: step for step in self.steps}


class _PIIScrubber:
    """Tracing's scrubber when ``harden`` also has a PII layer: the anonymizer's
    detectors first (names, phone numbers, IBANs...), then the built-in regexes."""

    def __init__(self, anonymizer: Any, fallback: Callable[[str], str]) -> None:
        self._anonymizer = anonymizer
        self._fallback = fallback

    def __call__(self, text: str) -> str:
        return str(self._fallback(self._anonymizer.scrub(text)))

    def __repr__(self) -> str:
        return "PIIScrubber()"


def _share_pii_detection(configs: dict[str, Any]) -> None:
    """Let the tracing layer scrub captured text with the PII layer's detectors.

    Only when tracing uses the default scrubber: one the caller chose is kept.
    ``pii=True`` is resolved to a ``PIIAnonymizer`` here so both layers share it.
    """
    pii, tracing = configs["pii"], configs["tracing"]
    if pii in (None, False) or tracing in (None, False):
        return
    try:
        from ragprod.logging import scrub_text
        from ragprod.pii import PIIAnonymizer
        from ragprod.pii._step import PIIStep
        from ragprod.tracing import Tracing
    except ModuleNotFoundError:  # pragma: no cover - a layer that has not landed
        return
    if pii is True:
        pii = configs["pii"] = PIIAnonymizer()
    anonymizer = pii.anonymizer if isinstance(pii, PIIStep) else pii
    if not isinstance(anonymizer, PIIAnonymizer):
        return  # make_step reports the wrong type
    if tracing is True:
        tracing = Tracing()
    if isinstance(tracing, Tracing) and tracing.scrubber is scrub_text:
        configs["tracing"] = dataclasses.replace(
            tracing, scrubber=_PIIScrubber(anonymizer, scrub_text)
        )


def harden(
    index_or_engine: BaseIndex[Any] | BaseQueryEngine,
    *,
    tracing: Any = True,
    cache: Any = None,
    resilience: Any = None,
    pii: Any = None,
    guard: Any = None,
    metrics: RagMetrics | None = None,
    name: str | None = None,
    **engine_kwargs: Any,
) -> HardenedQueryEngine:
    """Wrap an index or query engine in ragprod's layers, in the right order.

    Order, outermost first: tracing, guard, pii, cache, resilience, then your
    engine. Each layer argument takes ``True`` (defaults), a configured object
    of that layer (``ragprod.guard.QueryGuard(...)``, ...), or ``None``/``False``
    (off). All layers share one ``RagMetrics`` and run inside one shell, so a
    hardened query pays LlamaIndex's dispatcher span once. With both ``pii``
    and ``tracing`` on, text the tracing layer captures (``capture_content``,
    exception messages) is scrubbed with the PII layer's detectors too.

    Args:
        index_or_engine: a LlamaIndex index (its ``as_query_engine(**engine_kwargs)``
            is wrapped) or any ``BaseQueryEngine``.
        tracing, guard, pii, cache, resilience: the layers.
        metrics: the shared collectors (a private registry by default).
        name: the engine's name in metrics, spans and cache namespaces.
        **engine_kwargs: passed to ``as_query_engine`` (only with an index).

    Raises:
        ConfigurationError: a layer was asked for that is not installed, or
            engine keyword arguments were given with an engine.
        TypeError: the object is neither an index nor a query engine, or a
            layer argument has the wrong type.

    Example:
        >>> import ragprod
        >>> from ragprod.testing import FaultyQueryEngine
        >>> engine = ragprod.harden(FaultyQueryEngine(), tracing=False, guard=True)
        >>> str(engine.query("hello"))
        'ok'
    """
    if isinstance(index_or_engine, BaseQueryEngine):
        if engine_kwargs:
            raise ConfigurationError(
                f"engine keyword arguments {sorted(engine_kwargs)} need an index, not an engine"
            )
        engine = index_or_engine
    elif isinstance(index_or_engine, BaseIndex):
        engine = index_or_engine.as_query_engine(**engine_kwargs)
    else:
        raise TypeError(
            "harden() takes a LlamaIndex index or BaseQueryEngine, "
            f"got {type(index_or_engine).__name__}"
        )
    metrics = metrics if metrics is not None else RagMetrics()
    name = name or "default"
    configs = {
        "tracing": tracing,
        "guard": guard,
        "pii": pii,
        "cache": cache,
        "resilience": resilience,
    }
    _share_pii_detection(configs)
    steps: list[QueryStep] = []
    missing: list[str] = []
    for layer, package in LAYERS:
        config = configs[layer]
        if config is None or config is False:
            continue
        factory = _step_factory(package)
        if factory is None:
            if layer == "tracing" and config is True:
                continue  # the default: offered once the tracing layer is installed
            missing.append(f"{layer}: {package} is not available in this ragprod")
            continue
        steps.append(factory(config, engine=engine, metrics=metrics, name=name))
    if missing:
        raise ConfigurationError(missing)
    return HardenedQueryEngine(engine, steps, metrics=metrics, name=name)
