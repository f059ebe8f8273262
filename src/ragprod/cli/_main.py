"""Argument parsing and dispatch for the ``ragprod`` console script.

Subcommands:

- ``ragprod demo``: the offline walkthrough.
- ``ragprod check``: preflight checks of an application (``ragprod.preflight``).
- ``ragprod keys generate``: a new keyring as JSON (stdout, or a 0600 file).
- ``ragprod keys rotate``: add a new primary key to a keyring file.
- ``ragprod keys rewrap``: re-encrypt a persist directory under the primary key.

Exit status: 0 success, 1 the command ran and found a problem (``check``
errors), 2 the command could not run (bad arguments, a missing keyring, an
unreadable directory). Messages never include key material or configuration
values, only what was wrong.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from ragprod._version import __version__
from ragprod.errors import RagprodError

if TYPE_CHECKING:
    from ragprod.crypto import Keyring

__all__ = ["EXIT_ERRORS", "EXIT_OK", "EXIT_UNUSABLE", "build_parser", "main"]

EXIT_OK, EXIT_ERRORS, EXIT_UNUSABLE = 0, 1, 2


def _demo(args: argparse.Namespace, out: TextIO) -> int:
    from ragprod.demo import run_demo

    run_demo(redis_url=args.redis, as_json=args.json, out=out)
    return EXIT_OK


def _check(args: argparse.Namespace, out: TextIO) -> int:
    from ragprod.preflight._cli import run_check

    return run_check(args, out=out)


def _load_keyring(args: argparse.Namespace) -> Keyring:
    from ragprod.crypto import DEFAULT_ENV_VAR, Keyring

    if args.keyring:
        return Keyring.from_file(args.keyring)
    return Keyring.from_env(args.env_var or DEFAULT_ENV_VAR)


def _keys_generate(args: argparse.Namespace, out: TextIO) -> int:
    from ragprod.crypto import Keyring

    keyring = Keyring.generate()
    if args.out is None:
        print(keyring.to_json(), file=out)
        return EXIT_OK
    path = Path(args.out)
    if path.exists() and not args.force:
        raise _UsageError(f"{path} exists; pass --force to replace it")
    keyring.to_file(path)
    print(f"wrote a new keyring to {path} (mode 0600), primary key {keyring.primary_id}", file=out)
    return EXIT_OK


def _keys_rotate(args: argparse.Namespace, out: TextIO) -> int:
    from ragprod.crypto import Keyring

    path = Path(args.keyring)
    keyring = Keyring.from_file(path)
    old = keyring.primary_id
    new = keyring.rotate()
    keyring.to_file(path)
    print(
        f"rotated {path}: primary key {old} -> {new}; "
        f"run 'ragprod keys rewrap DIR --keyring {path}' to move existing data",
        file=out,
    )
    return EXIT_OK


def _keys_rewrap(args: argparse.Namespace, out: TextIO) -> int:
    from ragprod.crypto import rewrap

    target = Path(args.persist_dir)
    if not target.exists():
        raise _UsageError(f"{target} does not exist")
    keyring = _load_keyring(args)
    result = rewrap(target, keyring)
    print(
        f"rewrap {target}: {result.scanned} sealed files scanned, {result.rewrapped} re-encrypted "
        f"under {keyring.primary_id}, {result.current} already current",
        file=out,
    )
    return EXIT_OK


class _UsageError(Exception):
    """A command could not run; the message is safe to print."""


def build_parser() -> argparse.ArgumentParser:
    """The parser for every ``ragprod`` subcommand."""
    from ragprod.preflight._cli import add_check_arguments

    parser = argparse.ArgumentParser(
        prog="ragprod", description="Production-hardening wrappers for LlamaIndex."
    )
    parser.add_argument("--version", action="version", version=f"ragprod {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the offline walkthrough")
    demo.add_argument("--redis", metavar="URL", help="use this Redis as the L2 cache tier")
    demo.add_argument("--json", action="store_true", help="print a JSON report instead")
    demo.set_defaults(handler=_demo)

    check = sub.add_parser("check", help="preflight checks of an application's configuration")
    add_check_arguments(check)
    check.set_defaults(handler=_check)

    keys = sub.add_parser("keys", help="manage encryption keyrings (ragprod.crypto)")
    keys_sub = keys.add_subparsers(dest="keys_command", metavar="ACTION")
    keys.set_defaults(handler=None, parser=keys)

    generate = keys_sub.add_parser("generate", help="print (or write) a new keyring as JSON")
    generate.add_argument("--out", metavar="PATH", help="write to PATH with mode 0600")
    generate.add_argument("--force", action="store_true", help="replace an existing --out file")
    generate.set_defaults(handler=_keys_generate)

    rotate = keys_sub.add_parser("rotate", help="add a new primary key to a keyring file")
    rotate.add_argument("--keyring", metavar="PATH", required=True, help="the keyring file")
    rotate.set_defaults(handler=_keys_rotate)

    rewrap_cmd = keys_sub.add_parser(
        "rewrap", help="re-encrypt a persist directory under the keyring's primary key"
    )
    rewrap_cmd.add_argument("persist_dir", metavar="DIR", help="the index's persist directory")
    source = rewrap_cmd.add_mutually_exclusive_group()
    source.add_argument("--keyring", metavar="PATH", help="the keyring file")
    source.add_argument(
        "--env-var",
        metavar="NAME",
        help="environment variable holding the keyring (default RAGPROD_ENCRYPTION_KEYS)",
    )
    rewrap_cmd.set_defaults(handler=_keys_rewrap)
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Entry point of the ``ragprod`` script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        (getattr(args, "parser", None) or parser).print_help()
        return EXIT_UNUSABLE
    try:
        return int(handler(args, out or sys.stdout))
    except (_UsageError, RagprodError) as exc:
        prog = f"ragprod {args.command}" + (
            f" {args.keys_command}" if getattr(args, "keys_command", None) else ""
        )
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_UNUSABLE
    except OSError as exc:
        # File errors carry a path, never a secret; name the class and the path only.
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"ragprod {args.command}: {type(exc).__name__}{where}", file=sys.stderr)
        return EXIT_UNUSABLE
