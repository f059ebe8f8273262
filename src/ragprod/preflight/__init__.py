"""Fail-fast configuration checks and liveness/readiness probes for LlamaIndex apps.

``validate()`` inspects LlamaIndex ``Settings``, engines, indexes and stores
*before* the first request and returns a :class:`Report` of :class:`Finding`
objects with stable codes (``RAGPROD-E0nn`` errors, ``RAGPROD-W0nn``
warnings). ``write_manifest()`` records what built an index so serving with a
different embedding model is refused. ``HealthCheck`` answers ``/health`` and
``/ready`` with per-dependency status and latency. ``run_cli_check()`` is the
function behind ``ragprod check``.
"""

from ragprod.preflight._check import Check, register_check
from ragprod.preflight._cli import run_cli_check
from ragprod.preflight._context import CheckContext
from ragprod.preflight._finding import Finding, Report, Severity, mask_secret
from ragprod.preflight._health import HealthCheck, HealthStatus, Probe
from ragprod.preflight._manifest import Manifest, load_manifest, write_manifest
from ragprod.preflight._probes import ProbeResult
from ragprod.preflight._validate import DEFAULT_CHECKS, validate

__all__ = [
    "Check",
    "CheckContext",
    "DEFAULT_CHECKS",
    "Finding",
    "HealthCheck",
    "HealthStatus",
    "Manifest",
    "Probe",
    "ProbeResult",
    "Report",
    "Severity",
    "load_manifest",
    "mask_secret",
    "register_check",
    "run_cli_check",
    "validate",
    "write_manifest",
]
