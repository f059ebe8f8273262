"""Each section of ``ragprod demo``, asserted through the report ``run_demo`` returns."""

from __future__ import annotations

import io
from typing import Any

import pytest
import redis
from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]

from ragprod.demo import SECTIONS, DemoContext, load_corpus, run_demo
from ragprod.demo._basics import build_index
from ragprod.demo._hardened import DEMO_PII_KEY, build_engine, make_cache
from ragprod.demo._pii import QUESTION
from ragprod.pii import PIIAnonymizer, Vault
from ragprod.testing import SpanCapture
from ragprod.tracing import Tracing
from ragprod.tracing._instrument import installed

EXPECTED = ["index", "queries", "harden", "cache", "pii", "resilience", "encryption", "preflight"]
RAW = ("Priya Raman", "priya.raman@example.com", "+1 (212) 555-0142")


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """One offline run of the whole demo, as JSON data."""
    return run_demo(as_json=True, out=io.StringIO())


def _names(nodes: list[dict[str, Any]]) -> list[str]:
    return [node["name"] for node in nodes]


def test_sections_run_in_order_with_timings(report: dict[str, Any]) -> None:
    """Every section reports, in the documented order, and the demo stays fast."""
    assert [section.key for section in SECTIONS] == EXPECTED
    assert list(report["timings_ms"]) == EXPECTED
    assert all(key in report for key in EXPECTED)
    assert report["total_ms"] < 60_000


def test_harden_builds_the_full_stack(report: dict[str, Any]) -> None:
    """``harden`` composes every layer in order and the guard rejects a NUL byte."""
    harden = report["harden"]
    assert harden["layers"] == ["tracing", "guard", "pii", "cache", "resilience"]
    stack = "tracing -> guard -> pii -> cache -> resilience -> RetrieverQueryEngine"
    assert stack in harden["repr"]
    assert harden["guard_rejected"] == "control_characters"
    assert harden["l2"] is False


def test_repeated_query_is_a_faster_cache_hit(report: dict[str, Any]) -> None:
    """The second identical query is an L1 hit with the same answer, faster than the miss."""
    cache = report["cache"]
    assert cache["hit"] is True
    assert cache["tier"] == "l1"
    assert cache["same_answer"] is True
    assert cache["hit_ms"] < cache["miss_ms"]
    assert cache["speedup"] > 1
    assert cache["metrics"] == {"miss": 1.0, "hit": 1.0}
    assert "l2" not in cache


def test_miss_span_tree_has_the_pipeline_shape(report: dict[str, Any]) -> None:
    """The miss is one trace: query span > engine > retrieve/postprocess/synthesize > models."""
    (root,) = report["cache"]["miss_tree"]
    assert root["name"] == "query demo"
    assert root["attributes"]["cache.hit"] is False
    (engine,) = root["children"]
    assert engine["name"] == "query RetrieverQueryEngine"
    steps = {child["name"].split()[0]: child for child in engine["children"]}
    assert _names(engine["children"]) == [
        "retrieve VectorIndexRetriever",
        "postprocess PIINodePostprocessor",
        "synthesize CompactAndRefine",
    ]
    assert _names(steps["retrieve"]["children"]) == ["embeddings ragprod-hash-256"]
    assert steps["retrieve"]["attributes"]["ragprod.retrieval.top_k"] == 3
    (llm,) = steps["synthesize"]["children"]
    assert llm["name"] == "text_completion ragprod-extractive"
    assert llm["attributes"]["gen_ai.usage.input_tokens"] > 0


def test_hit_span_tree_is_one_span(report: dict[str, Any]) -> None:
    """A cache hit is a single span marked as a hit: nothing below the cache ran."""
    (root,) = report["cache"]["hit_tree"]
    assert root["children"] == []
    assert root["attributes"]["cache.hit"] is True
    assert root["attributes"]["cache.tier"] == "l1"


def test_pii_is_pseudonymized_below_and_restored_for_the_user(report: dict[str, Any]) -> None:
    """Retriever, cache and LLM see pseudonyms; the user's answer has the originals."""
    pii = report["pii"]
    assert pii["entity_types"] == ["EMAIL_ADDRESS", "PERSON", "PHONE_NUMBER"]
    assert pii["pseudonyms_in_query"] == 3
    assert pii["raw_in_query_below"] == 0
    assert not any(raw in pii["pseudonymized_query"] for raw in RAW)
    assert not any(raw in pii["llm_answer"] for raw in RAW)
    assert pii["pseudonyms_in_llm_answer"] > 0
    assert pii["pseudonyms_in_answer"] == 0
    assert pii["originals_in_answer"] == 3
    assert "Priya Raman" in pii["answer"]
    assert pii["repeat_hit"] is True


def test_pii_is_absent_from_llm_spans_and_logs(report: dict[str, Any]) -> None:
    """No raw PII value reaches the LLM, the captured spans or the log events."""
    pii = report["pii"]
    assert pii["probes"] >= len(RAW)
    assert pii["raw_found"] == {"llm": 0, "spans": 0, "logs": 0}
    assert pii["checked"]["llm"] >= 1
    assert pii["checked"]["spans"] >= 5
    assert pii["checked"]["logs"] >= 1
    assert pii["span_query_text"].startswith("<PERSON> (<EMAIL_ADDRESS>, <PHONE_NUMBER>)")


def test_text_output_shows_raw_pii_only_in_the_users_own_lines() -> None:
    """Outside "you asked"/"you got", the walkthrough prints no PII value of the corpus."""
    out = io.StringIO()
    run_demo(out=out)
    finder = PIIAnonymizer(key=DEMO_PII_KEY, vault=Vault())
    values = set()
    for doc in load_corpus():
        for text in (doc.text, doc.metadata["title"]):
            values.update(text[e.start : e.end] for e in finder.analyze(text))
    assert "priya.raman@example.com" in values
    lines = out.getvalue().splitlines()
    own = [line for line in lines if line.lstrip().startswith(("you asked:", "you got:"))]
    assert len(own) == 2
    shown = "\n".join(line for line in lines if line not in own)
    assert sorted(v for v in values if v in shown) == []


def test_outage_opens_the_breaker_and_recovers(report: dict[str, Any]) -> None:
    """The injected outage trips the breaker, answers fall back, then it closes again."""
    resilience = report["resilience"]
    assert resilience["opened"] == 1
    assert resilience["fallbacks"] >= 4
    assert "open" in [state for state, _ in resilience["timeline"]]
    assert resilience["final_state"] == "closed"


def test_encrypted_docstore_has_no_plaintext_on_disk(report: dict[str, Any]) -> None:
    """Persisted stores hold no probe word in plaintext and refuse a wrong keyring."""
    encryption = report["encryption"]
    assert encryption["plaintext_hits"] == 0
    assert "docstore.json" in encryption["files"]
    assert encryption["wrong_key"] == "KeyNotFoundError"


def test_preflight_report_is_present(report: dict[str, Any]) -> None:
    """The hardened engine passes preflight; the misconfigured one fails with stable codes."""
    preflight = report["preflight"]
    assert preflight["ok"] is True
    assert preflight["codes"] == []
    assert preflight["text"].startswith("preflight: ok")
    assert "embedding-dimension" in preflight["checks_run"]
    assert preflight["misconfigured_ok"] is False
    assert "RAGPROD-E020" in preflight["misconfigured_codes"]
    assert "RAGPROD-W011" in preflight["misconfigured_codes"]
    assert preflight["refused"] == "ConfigurationError"


def test_demo_leaves_no_instrumentation_behind(report: dict[str, Any]) -> None:
    """After the demo, neither the OTel bridge nor the demo's event recorder is installed."""
    assert report["pii"]["checked"]["llm"] >= 1
    assert installed() is None
    root = get_dispatcher()
    handlers = [type(h).__name__ for h in [*root.event_handlers, *root.span_handlers]]
    assert not [name for name in handlers if name.startswith(("_Seen", "OTel", "Token"))]


def test_sibling_engine_shares_cache_keys_after_pii_traffic() -> None:
    """An engine built after PII traffic gets the same cache fingerprint (so L2 is shared)."""
    ctx = DemoContext(as_json=True, out=io.StringIO())
    build_index(ctx)
    anonymizer = PIIAnonymizer(key=DEMO_PII_KEY, vault=Vault())
    spans = SpanCapture()
    tracing = Tracing(tracer_provider=spans.provider, log_events=False)
    first = build_engine(ctx, tracing, anonymizer, make_cache(None, None))
    first.query(QUESTION)
    second = build_engine(ctx, tracing, anonymizer, make_cache(None, None))
    spans.shutdown()
    assert first.layers["cache"].fingerprint == second.layers["cache"].fingerprint  # type: ignore[attr-defined]


def test_demo_with_redis_serves_an_l2_hit_and_cleans_up(redis_server_url: str) -> None:
    """With --redis, a fresh-L1 engine hits L2, Redis holds no raw PII, and keys are deleted."""
    report: dict[str, Any] = run_demo(redis_url=redis_server_url, as_json=True, out=io.StringIO())
    assert report["harden"]["l2"] is True
    prefix = report["harden"]["prefix"]
    assert prefix.startswith("ragprod-demo:")
    l2 = report["cache"]["l2"]
    assert l2["hit"] is True
    assert l2["tier"] == "l2"
    assert l2["same_answer"] is True
    assert l2["then_tier"] == "l1"
    pii = report["pii"]
    assert pii["raw_found"]["redis"] == 0
    assert pii["checked"]["redis"] >= 4
    assert "redis-reachable" in report["preflight"]["checks_run"]
    assert report["preflight"]["ok"] is True
    cleanup = report["cleanup"]
    assert cleanup["prefix"] == prefix
    assert cleanup["redis_keys_deleted"] >= 2
    assert cleanup["left"] == 0
    client = redis.Redis.from_url(redis_server_url)
    try:
        assert list(client.scan_iter(match=f"{prefix}*")) == []
    finally:
        client.close()
