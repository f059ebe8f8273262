"""Argument parsing and dispatch for the ``ragprod`` console script."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ragprod._version import __version__

__all__ = ["build_parser", "main"]


def _demo(args: argparse.Namespace) -> int:
    from ragprod.demo import run_demo

    run_demo(redis_url=args.redis, as_json=args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser for every ``ragprod`` subcommand."""
    parser = argparse.ArgumentParser(
        prog="ragprod", description="Production-hardening wrappers for LlamaIndex."
    )
    parser.add_argument("--version", action="version", version=f"ragprod {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="run the offline walkthrough")
    demo.add_argument("--redis", metavar="URL", help="use this Redis as the L2 cache tier")
    demo.add_argument("--json", action="store_true", help="print a JSON report instead")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ragprod`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    return int(handler(args))
