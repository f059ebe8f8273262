"""The examples in ragprod.crypto's docstrings run."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "ragprod.crypto",
    "ragprod.crypto._context",
    "ragprod.crypto._keyring",
    "ragprod.crypto._kvstore",
    "ragprod.crypto._rewrap",
    "ragprod.crypto._simple",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_pass(name: str) -> None:
    """Every >>> example in the module's docstrings gives the shown output."""
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0
