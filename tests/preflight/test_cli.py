"""run_cli_check(): the function behind ``ragprod check`` and its exit statuses."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import pytest

from ragprod.preflight import run_cli_check

GOOD_APP = """
from llama_index.core import Document, Settings, VectorStoreIndex
from ragprod.testing import ExtractiveLLM, HashEmbedding

Settings.llm = ExtractiveLLM()
Settings.embed_model = HashEmbedding(dim=32)
index = VectorStoreIndex.from_documents([Document(text="refunds take five days")])
engine = index.as_query_engine()

def build():
    return {"engine": engine, "allow_mock": False}
"""


@pytest.fixture
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Write an app module with a unique name; returns a function(source) -> module name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"app_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(source)
        return name

    return write


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return run_cli_check(list(argv), out=out), out.getvalue()


def test_good_engine_exits_zero(app) -> None:  # type: ignore[no-untyped-def]
    """A correctly configured engine: exit 0 and an ok JSON report."""
    status, text = run("--app", f"{app(GOOD_APP)}:engine", "--json")
    assert status == 0
    assert json.loads(text)["ok"] is True


def test_index_and_factory_targets(app) -> None:  # type: ignore[no-untyped-def]
    """An index attribute and a factory returning validate() kwargs both work."""
    name = app(GOOD_APP)
    assert run("--app", f"{name}:index")[0] == 0
    assert run("--app", f"{name}:build")[0] == 0


def test_errors_exit_one(app) -> None:  # type: ignore[no-untyped-def]
    """A misconfiguration (chunk overlap) exits 1 and names the code."""
    name = app(GOOD_APP + "\nSettings.chunk_size = 100\n")
    status, text = run("--app", f"{name}:engine")
    assert status == 1
    assert "RAGPROD-E010" in text


def test_strict_fails_on_warnings(app) -> None:  # type: ignore[no-untyped-def]
    """--strict turns a warning-only report into exit 1."""
    name = app(GOOD_APP + "\nengine = index.as_query_engine(similarity_top_k=40)\n")
    assert run("--app", f"{name}:engine")[0] == 0
    assert run("--app", f"{name}:engine", "--strict")[0] == 1


def test_removed_api_in_app_source(app) -> None:  # type: ignore[no-untyped-def]
    """The app module's own source is scanned for ServiceContext."""
    name = app(GOOD_APP + "\n# legacy: ServiceContext.from_defaults()\n")
    status, text = run("--app", f"{name}:engine")
    assert status == 1
    assert "RAGPROD-E050" in text


@pytest.mark.parametrize(
    "spec",
    ["no_such_module_xyz:engine", "json:no_such_attribute", "json:dumps", "nocolon"],
)
def test_unusable_app_exits_two(spec: str, capsys: pytest.CaptureFixture[str]) -> None:
    """An app that cannot be imported or is not an engine/index exits 2."""
    assert run("--app", spec)[0] == 2
    assert "ragprod check:" in capsys.readouterr().err


def test_app_raising_exits_two_without_leaking(app, capsys) -> None:  # type: ignore[no-untyped-def]
    """A factory that raises exits 2; its exception text (maybe a secret) is not printed."""
    name = app("def build():\n    raise RuntimeError('password=hunter2-canary')\n")
    assert run("--app", f"{name}:build")[0] == 2
    err = capsys.readouterr().err
    assert "RuntimeError" in err
    assert "hunter2" not in err


def test_bad_arguments_exit_two() -> None:
    """Unknown options exit 2 (argparse's usage error)."""
    assert run("--no-such-option")[0] == 2


def test_app_from_environment(app, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """RAGPROD_APP is used when --app is not given."""
    monkeypatch.setenv("RAGPROD_APP", f"{app(GOOD_APP)}:engine")
    status, text = run("--json")
    assert status == 0
    assert "llm" in json.loads(text)["checks_run"]


def test_list_checks() -> None:
    """--list-checks prints every default check with its codes and exits 0."""
    status, text = run("--list-checks")
    assert status == 0
    assert "chunk-overlap: RAGPROD-E010" in text
    assert "redis-reachable [probe]" in text
