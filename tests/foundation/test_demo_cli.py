"""The ``ragprod`` command line and the offline demo."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest

from ragprod.cli import main
from ragprod.demo import DEMO_QUERIES, load_corpus, run_demo


def test_corpus_is_bundled_with_stable_ids() -> None:
    """The corpus ships as package data: about 30 documents with unique ids."""
    docs = load_corpus()
    assert len(docs) == 30
    assert len({d.doc_id for d in docs}) == 30
    assert all(d.text.strip() for d in docs)


def test_demo_answers_from_the_right_documents() -> None:
    """Each demo query is answered from a relevant document, with sources."""
    report = run_demo(as_json=True, out=io.StringIO())
    answers = report["queries"]["answers"]  # type: ignore[index]
    assert [a["query"] for a in answers] == list(DEMO_QUERIES)
    for answer in answers:
        assert answer["sources"], "every answer cites sources"
        assert answer["answer"] != "The context does not contain an answer."
    assert "refund" in answers[0]["answer"].lower()
    assert "redis" in answers[1]["answer"].lower()


def test_demo_text_output_walks_through_sections() -> None:
    """The human-readable demo prints numbered sections and the total time."""
    out = io.StringIO()
    run_demo(out=out)
    text = out.getvalue()
    assert "[1/" in text
    assert "done in" in text
    for query in DEMO_QUERIES:
        assert query in text


def test_cli_without_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``ragprod`` alone prints usage and exits with status 2."""
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_cli_rejects_unknown_command() -> None:
    """An unknown subcommand is a usage error."""
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == 2


def test_python_m_ragprod_demo_json_runs_offline() -> None:
    """``python -m ragprod demo --json`` exits 0 with a JSON report, no network needed."""
    env = {**os.environ, "OPENAI_API_KEY": "", "NO_PROXY": "*", "HTTPS_PROXY": "http://0.0.0.0:9"}
    proc = subprocess.run(
        [sys.executable, "-m", "ragprod", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["index"]["documents"] == 30
    assert report["total_ms"] < 60_000
