"""``ragprod check`` and ``ragprod keys ...`` through the real console entry point."""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from llama_index.core import VectorStoreIndex, load_index_from_storage

from ragprod.cli import main
from ragprod.crypto import Keyring, encrypted_storage_context
from ragprod.testing import ExtractiveLLM, HashEmbedding

DOCS = ("Refunds are paid within five business days.", "Passwords rotate every ninety days.")


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(list(argv), out=out)
    return status, out.getvalue()


def persist_encrypted_index(directory: Path, keyring: Keyring) -> None:
    from llama_index.core import Document

    storage = encrypted_storage_context(keyring)
    VectorStoreIndex.from_documents(
        [Document(text=t) for t in DOCS], storage_context=storage, embed_model=HashEmbedding()
    )
    storage.persist(persist_dir=str(directory))


def test_keys_generate_prints_a_loadable_keyring() -> None:
    status, text = run("keys", "generate")
    assert status == 0
    ring = Keyring.from_json(text)
    assert len(ring) == 1
    again = Keyring.from_json(run("keys", "generate")[1])
    assert not again.same_keys(ring)


def test_keys_generate_writes_a_private_file_and_refuses_to_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "ring.json"
    status, text = run("keys", "generate", "--out", str(path))
    assert status == 0
    assert str(path) in text
    ring = Keyring.from_file(path)
    assert ring.primary_id in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key_material = json.loads(path.read_text())["keys"][ring.primary_id]
    assert key_material not in text  # the confirmation never shows the key

    assert run("keys", "generate", "--out", str(path)) == (2, "")
    assert Keyring.from_file(path).same_keys(ring)  # the existing keyring is untouched
    assert run("keys", "generate", "--out", str(path), "--force")[0] == 0
    assert not Keyring.from_file(path).same_keys(ring)


def test_rotate_then_rewrap_moves_a_persisted_index_to_the_new_key(tmp_path: Path) -> None:
    ring_path = tmp_path / "ring.json"
    data = tmp_path / "index"
    assert run("keys", "generate", "--out", str(ring_path))[0] == 0
    old = Keyring.from_file(ring_path)
    persist_encrypted_index(data, old)

    status, text = run("keys", "rotate", "--keyring", str(ring_path))
    assert status == 0
    new = Keyring.from_file(ring_path)
    assert new.primary_id != old.primary_id
    assert set(new.key_ids) == {old.primary_id, new.primary_id}

    status, text = run("keys", "rewrap", str(data), "--keyring", str(ring_path))
    assert status == 0
    assert "re-encrypted" in text
    scanned = int(text.split(": ", 1)[1].split()[0])
    assert scanned >= 3
    assert f"{scanned} re-encrypted" in text
    status, text = run("keys", "rewrap", str(data), "--keyring", str(ring_path))
    assert f"0 re-encrypted under {new.primary_id}, {scanned} already current" in text

    # Only the new key is needed now: retire the old one and load the index.
    new.retire(old.primary_id)
    storage = encrypted_storage_context(new, persist_dir=str(data))
    index = load_index_from_storage(storage, embed_model=HashEmbedding())
    answer = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=1).query("refunds?")
    assert "five business days" in str(answer)


def test_rewrap_reads_the_keyring_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = Keyring.generate()
    persist_encrypted_index(tmp_path, ring)
    ring.rotate()
    monkeypatch.setenv("MY_KEYS", ring.to_json())
    status, text = run("keys", "rewrap", str(tmp_path), "--env-var", "MY_KEYS")
    assert status == 0
    assert "already current" in text


def test_rewrap_errors_are_clean_and_leak_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = Keyring.generate()
    persist_encrypted_index(tmp_path, ring)
    monkeypatch.delenv("RAGPROD_ENCRYPTION_KEYS", raising=False)

    assert run("keys", "rewrap", str(tmp_path))[0] == 2
    assert "RAGPROD_ENCRYPTION_KEYS is not set" in capsys.readouterr().err

    assert run("keys", "rewrap", str(tmp_path / "missing"), "--keyring", "x")[0] == 2
    assert "does not exist" in capsys.readouterr().err

    other = Keyring.generate()
    other_path = tmp_path.parent / f"{tmp_path.name}-other.json"
    other.to_file(other_path)
    status, _ = run("keys", "rewrap", str(tmp_path), "--keyring", str(other_path))
    assert status == 2
    err = capsys.readouterr().err
    assert err.startswith("ragprod keys rewrap: ")
    for secret in json.loads(other.to_json())["keys"].values():
        assert secret not in err

    assert run("keys", "rotate", "--keyring", str(tmp_path / "nope.json"))[0] == 2
    assert "cannot be read" in capsys.readouterr().err


def test_keys_without_an_action_prints_its_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("keys")[0] == 2
    assert "generate" in capsys.readouterr().out


def test_check_runs_preflight_on_an_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "cli_check_app.py"
    app.write_text(
        "from llama_index.core import Document, VectorStoreIndex\n"
        "from ragprod.testing import ExtractiveLLM, HashEmbedding\n"
        "index = VectorStoreIndex.from_documents([Document(text='hello world')],"
        " embed_model=HashEmbedding())\n"
        "engine = index.as_query_engine(llm=ExtractiveLLM())\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    status, text = run("check", "--app", "cli_check_app:engine", "--json")
    report = json.loads(text)
    assert status == (0 if report["ok"] else 1)
    assert "findings" in report


def test_check_with_an_unimportable_app_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("check", "--app", "no_such_module_ragprod:engine")[0] == 2
    assert "could not import" in capsys.readouterr().err


def test_check_lists_its_checks() -> None:
    status, text = run("check", "--list-checks")
    assert status == 0
    assert text.strip()


def test_console_script_runs_keys_generate() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ragprod", "keys", "generate"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert proc.returncode == 0, proc.stderr
    assert len(Keyring.from_json(proc.stdout)) == 1
