"""The public API: every package's ``__all__`` is sorted, complete and importable."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import pkgutil
from types import ModuleType

import pytest

import ragprod

# Subpackages whose public names ``ragprod`` re-exports flat (DESIGN.md).
REEXPORTED = (
    "ragprod.errors",
    "ragprod.metrics",
    "ragprod.tracing",
    "ragprod.logging",
    "ragprod.cache",
    "ragprod.resilience",
    "ragprod.pii",
    "ragprod.crypto",
    "ragprod.guard",
    "ragprod.preflight",
)


def public_modules() -> list[str]:
    names = ["ragprod"]
    for info in pkgutil.iter_modules(ragprod.__path__, "ragprod."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            names.append(info.name)
    return sorted(names)


def own_public_names(module: ModuleType) -> set[str]:
    """Classes and functions a module defines or imports from ragprod, minus private ones."""
    names = set()
    for name, value in vars(module).items():
        if name.startswith("_") or inspect.ismodule(value):
            continue
        origin = getattr(value, "__module__", "") or ""
        if (inspect.isclass(value) or inspect.isfunction(value)) and origin.startswith("ragprod"):
            names.add(name)
    return names


@pytest.mark.parametrize("name", public_modules())
def test_all_is_sorted_and_importable(name: str) -> None:
    """Each public module has a sorted ``__all__`` whose names all exist."""
    module = importlib.import_module(name)
    exported = list(getattr(module, "__all__", []))
    assert exported, f"{name} has no __all__"
    assert exported == sorted(exported), f"{name}.__all__ is not sorted"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    for attr in exported:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr}"


@pytest.mark.parametrize("name", public_modules())
def test_all_is_complete(name: str) -> None:
    """Every public class or function a module holds is listed in its ``__all__``."""
    module = importlib.import_module(name)
    missing = own_public_names(module) - set(module.__all__)
    assert not missing, f"{name}.__all__ lacks {sorted(missing)}"


def test_top_level_reexports_every_capability() -> None:
    """``ragprod`` re-exports the public names of each capability that has landed."""
    for name in REEXPORTED:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue  # a capability that has not landed yet is simply not offered
        missing = [n for n in module.__all__ if n not in ragprod.__all__]
        assert not missing, f"ragprod does not re-export {name}: {missing}"
        for n in module.__all__:
            assert getattr(ragprod, n) is getattr(module, n)


def test_version_matches_installed_metadata() -> None:
    """``ragprod.__version__`` is the version pip installed."""
    assert ragprod.__version__ == importlib.metadata.version("ragprod")


def test_package_is_typed() -> None:
    """The ``py.typed`` marker ships with the package."""
    from importlib import resources

    assert resources.files("ragprod").joinpath("py.typed").is_file()
