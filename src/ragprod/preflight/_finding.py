"""Findings, reports and secret masking."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ragprod.errors import ConfigurationError

__all__ = ["Finding", "JSONValue", "Report", "Severity", "mask_secret", "sort_findings"]

Severity = Literal["error", "warning"]
#: A JSON-able value (str, number, bool, None, lists and str-keyed dicts of these).
JSONValue = Any

_CODE = re.compile(r"^[A-Z][A-Z0-9]*-[EW][0-9]{3}$")


def mask_secret(secret: str | None) -> str:
    """A printable stand-in for a secret: its length and at most a 3-character prefix.

    Only prefixes of long secrets are shown, and only their first three characters
    (``sk-``), which identify the provider without helping anyone guess the key.

    Example:
        >>> mask_secret("sk-abcdefghijklmnopqrstuvwxyz")
        'sk-…(29 chars)'
        >>> mask_secret("")
        '(empty)'
    """
    if secret is None:
        return "(unset)"
    if not secret:
        return "(empty)"
    prefix = secret[:3] if len(secret) >= 20 else ""
    return f"{prefix}…({len(secret)} chars)"


def _scrub(value: JSONValue, secrets: tuple[str, ...]) -> JSONValue:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, mask_secret(secret))
        return value
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    return value


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found by a check.

    Args:
        code: a stable identifier, ``PREFIX-E0nn`` for errors and ``PREFIX-W0nn``
            for warnings (ragprod's own use ``RAGPROD-``). Documented in
            ``docs/preflight.md``; never reused for another meaning.
        severity: ``"error"`` (the application will fail or silently answer wrong)
            or ``"warning"`` (it works, but not as the operator probably intends).
            Must match the code's ``E``/``W`` letter.
        message: what is wrong, in one line, without user content or secrets.
        value: the offending value (JSON-able; secrets are always masked).
        expected: what the value should be.
        fix: what to change.

    Raises:
        ValueError: the code is malformed or disagrees with the severity.

    Example:
        >>> f = Finding("RAGPROD-E010", "error", "chunk_overlap >= chunk_size", 200, "< 128", "x")
        >>> f.is_error
        True
    """

    code: str
    severity: Severity
    message: str
    value: JSONValue = None
    expected: JSONValue = None
    fix: str = ""

    def __post_init__(self) -> None:
        if not _CODE.match(self.code):
            raise ValueError(f"finding code {self.code!r} is not like 'RAGPROD-E001'")
        letter = self.code.rsplit("-", 1)[1][0]
        if self.severity not in ("error", "warning") or (letter == "E") != (
            self.severity == "error"
        ):
            raise ValueError(f"finding code {self.code} disagrees with severity {self.severity!r}")

    @property
    def is_error(self) -> bool:
        """Whether this finding is an error."""
        return self.severity == "error"

    def line(self) -> str:
        """A one-line summary: code, message, then the fix."""
        fix = f" (fix: {self.fix})" if self.fix else ""
        return f"{self.code} {self.message}{fix}"

    def redacted(self, secrets: tuple[str, ...]) -> Finding:
        """A copy with every occurrence of ``secrets`` masked in every field."""
        if not secrets:
            return self
        return Finding(
            code=self.code,
            severity=self.severity,
            message=str(_scrub(self.message, secrets)),
            value=_scrub(self.value, secrets),
            expected=_scrub(self.expected, secrets),
            fix=str(_scrub(self.fix, secrets)),
        )


@dataclass(frozen=True, slots=True)
class Report:
    """The outcome of :func:`~ragprod.preflight.validate`.

    Attributes:
        findings: every finding, errors first, in check order.
        checks_run: the names of the checks that ran.
        duration_s: wall time of the whole run.
        crashed: names of checks that raised (each also yields ``RAGPROD-E099``).
    """

    findings: tuple[Finding, ...] = ()
    checks_run: tuple[str, ...] = ()
    duration_s: float = 0.0
    crashed: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when no finding is an error (warnings do not count)."""
        return not any(f.is_error for f in self.findings)

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings of severity ``"error"``."""
        return tuple(f for f in self.findings if f.is_error)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        """The findings of severity ``"warning"``."""
        return tuple(f for f in self.findings if not f.is_error)

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes of every finding, in order."""
        return tuple(f.code for f in self.findings)

    def __iter__(self) -> Iterator[Finding]:
        return iter(self.findings)

    def __len__(self) -> int:
        return len(self.findings)

    def raise_for_errors(self) -> None:
        """Raise one :class:`~ragprod.errors.ConfigurationError` listing every error.

        Raises:
            ConfigurationError: when at least one finding is an error; its
                ``problems`` hold one line per error (code, message, fix).
        """
        errors = self.errors
        if errors:
            raise ConfigurationError([f.line() for f in errors])

    def to_dict(self) -> dict[str, JSONValue]:
        """The report as JSON-able data."""
        return {
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "duration_ms": round(self.duration_s * 1000, 3),
            "checks_run": list(self.checks_run),
            "crashed": list(self.crashed),
            "findings": [asdict(f) for f in self.findings],
        }

    def to_json(self, *, indent: int | None = None) -> str:
        """The report as a JSON document (see :meth:`to_dict`)."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False, default=str)

    def to_text(self) -> str:
        """A human-readable multi-line summary."""
        head = "preflight: ok" if self.ok else "preflight: FAILED"
        head += f" ({len(self.errors)} errors, {len(self.warnings)} warnings)"
        lines = [head]
        for f in self.findings:
            lines.append(f"  {f.severity.upper():7} {f.line()}")
        return "\n".join(lines)


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Errors first, otherwise stable."""
    items = list(findings)
    return tuple(sorted(items, key=lambda f: 0 if f.is_error else 1))
