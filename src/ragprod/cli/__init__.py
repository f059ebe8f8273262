"""The ``ragprod`` command line: ``ragprod demo`` and friends."""

from ragprod.cli._main import build_parser, main

__all__ = ["build_parser", "main"]
