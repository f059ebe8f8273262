"""``Check``: one named rule turning a :class:`CheckContext` into findings."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ragprod.preflight._context import CheckContext
from ragprod.preflight._finding import Finding, JSONValue, Severity

__all__ = ["Check", "CheckFn", "check", "finding", "register_check", "registered_checks"]

CheckFn = Callable[[CheckContext], "Iterable[Finding] | None"]


@dataclass(frozen=True, slots=True)
class Check:
    """A named rule that inspects a :class:`~ragprod.preflight.CheckContext`.

    Args:
        name: a short, unique name (``"chunk-overlap"``); shown in
            ``Report.checks_run``.
        run: ``run(ctx)`` returns (or yields) findings; returning ``None`` or
            nothing means all is well. An exception it raises becomes a
            ``RAGPROD-E099`` finding naming the check, never a crash of
            :func:`~ragprod.preflight.validate`.
        codes: the codes it may emit (documentation only).
        probe: True when it does network I/O: it runs only with
            ``validate(probes=True)``, and must bound every call by
            ``ctx.timeout``.
        description: one line for ``docs`` and ``--list``.

    Example:
        >>> from ragprod.preflight import Check, Finding, validate
        >>> def no_tiny_top_k(ctx):
        ...     if ctx.top_k < 2:
        ...         yield Finding("ACME-W001", "warning", "top_k below 2", ctx.top_k, ">= 2")
        >>> report = validate(checks=[Check("acme-top-k", no_tiny_top_k)], only=["acme-top-k"])
        >>> report.checks_run
        ('acme-top-k',)
    """

    name: str
    run: CheckFn
    codes: tuple[str, ...] = ()
    probe: bool = False
    description: str = ""

    def __call__(self, ctx: CheckContext) -> list[Finding]:
        """Run the rule and return its findings as a list."""
        return list(self.run(ctx) or ())


_REGISTRY: list[Check] = []


def register_check(item: Check) -> Check:
    """Add ``item`` to the checks every :func:`validate` call runs (returns it).

    A check registered under an existing name replaces the earlier one, so
    re-importing a module does not run a check twice.
    """
    _REGISTRY[:] = [c for c in _REGISTRY if c.name != item.name]
    _REGISTRY.append(item)
    return item


def registered_checks() -> tuple[Check, ...]:
    """The checks added with :func:`register_check`, in order."""
    return tuple(_REGISTRY)


def check(
    name: str, *codes: str, probe: bool = False, description: str = ""
) -> Callable[[CheckFn], Check]:
    """Decorator: turn ``fn(ctx)`` into a :class:`Check` (not registered)."""

    def wrap(fn: CheckFn) -> Check:
        lines = (fn.__doc__ or "").strip().splitlines()
        doc = description or (lines[0] if lines else "")
        return Check(name=name, run=fn, codes=codes, probe=probe, description=doc)

    return wrap


def finding(
    code: str,
    message: str,
    *,
    value: JSONValue = None,
    expected: JSONValue = None,
    fix: str = "",
) -> Finding:
    """A :class:`Finding` whose severity follows its code's ``E``/``W`` letter."""
    severity: Severity = "error" if code.rsplit("-", 1)[-1].startswith("E") else "warning"
    return Finding(code, severity, message, value, expected, fix)
