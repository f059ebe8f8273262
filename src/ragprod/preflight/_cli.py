"""``ragprod check``: validate an application from the command line.

Exit status: 0 when the report is ok, 1 when it has errors (or warnings with
``--strict``), 2 when the check could not run (the app did not import, the
attribute is missing, arguments are wrong).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ragprod.preflight._finding import Report
from ragprod.preflight._validate import validate

__all__ = ["add_check_arguments", "load_app", "run_check", "run_cli_check"]

EXIT_OK, EXIT_ERRORS, EXIT_UNUSABLE = 0, 1, 2


class AppLoadError(Exception):
    """The ``--app`` target could not be loaded; the message is safe to print."""


def add_check_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``ragprod check``'s options to ``parser`` (for the lead's CLI wiring)."""
    parser.add_argument(
        "--app",
        metavar="MODULE:ATTRIBUTE",
        default=None,
        help="what to validate: a query engine, an index, a dict of validate() arguments, "
        "or a zero-argument callable returning one (default: RAGPROD_APP, else only the "
        "global Settings and RAGPROD_* variables)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--probes", action="store_true", help="also probe Redis and stored records (network)"
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds per probe")
    parser.add_argument("--strict", action="store_true", help="warnings also fail (exit 1)")
    parser.add_argument("--allow-mock", action="store_true", help="accept MockLLM/MockEmbedding")
    parser.add_argument("--persist-dir", default=None, help="the index's persist directory")
    parser.add_argument("--manifest", default=None, help="the index manifest (JSON path)")
    parser.add_argument(
        "--list-checks", action="store_true", help="list the checks and their codes, then exit"
    )
    return parser


def _list_checks(out: TextIO) -> int:
    from ragprod.preflight._check import registered_checks
    from ragprod.preflight._validate import DEFAULT_CHECKS

    for item in (*DEFAULT_CHECKS, *registered_checks()):
        probe = " [probe]" if item.probe else ""
        print(f"{item.name}{probe}: {', '.join(item.codes)}\n    {item.description}", file=out)
    return EXIT_OK


def load_app(spec: str) -> tuple[dict[str, Any], Any]:
    """Import ``module:attribute`` and turn it into ``validate()`` keyword arguments.

    Returns ``(kwargs, module)``. Raises :class:`AppLoadError` with a message
    naming only the spec and the exception class (never the exception text,
    which may quote configuration values).
    """
    from llama_index.core.base.base_query_engine import BaseQueryEngine
    from llama_index.core.indices.base import BaseIndex

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AppLoadError(f"--app must look like 'module:attribute', got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"could not import {module_name!r} ({type(exc).__name__})") from exc
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise AppLoadError(f"{module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if callable(target) and not isinstance(target, (BaseQueryEngine, BaseIndex, type)):
        try:
            target = target()
        except Exception as exc:
            raise AppLoadError(f"calling {spec!r} raised {type(exc).__name__}") from exc
    if isinstance(target, Mapping):
        return dict(target), module
    if isinstance(target, BaseQueryEngine):
        return {"engine": target}, module
    if isinstance(target, BaseIndex):
        return {"index": target}, module
    raise AppLoadError(
        f"{spec!r} is a {type(target).__name__}; expected a query engine, an index, "
        "a dict of validate() arguments or a callable returning one"
    )


def run_check(args: argparse.Namespace, *, out: TextIO | None = None) -> int:
    """Run ``ragprod check`` for parsed ``args``; returns the exit status."""
    out = out or sys.stdout
    if getattr(args, "list_checks", False):
        return _list_checks(out)
    kwargs: dict[str, Any] = {}
    spec = args.app or os.environ.get("RAGPROD_APP")
    if spec:
        try:
            kwargs, module = load_app(spec)
        except AppLoadError as exc:
            print(f"ragprod check: {exc}", file=sys.stderr)
            return EXIT_UNUSABLE
        if getattr(module, "__file__", None):
            kwargs.setdefault("sources", [module.__file__])
    for name in ("probes", "timeout", "persist_dir", "manifest"):
        value = getattr(args, name, None)
        if value not in (None, False):
            kwargs[name] = value
    if args.allow_mock:
        kwargs["allow_mock"] = True
    try:
        report: Report = validate(**kwargs)
    except TypeError as exc:
        print(f"ragprod check: bad validate() arguments ({type(exc).__name__})", file=sys.stderr)
        return EXIT_UNUSABLE
    print(report.to_json(indent=2) if args.json else report.to_text(), file=out)
    if not report.ok or (args.strict and report.warnings):
        return EXIT_ERRORS
    return EXIT_OK


def run_cli_check(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """``ragprod check [--app module:attribute] [--json] ...`` as a plain function.

    Example:
        >>> run_cli_check(["--app", "no_such_module:app"])  # doctest: +SKIP
        2
    """
    parser = add_check_arguments(
        argparse.ArgumentParser(prog="ragprod check", description="Preflight checks.")
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_UNUSABLE if exc.code else EXIT_OK
    return run_check(args, out=out)
