"""Report, Finding and Check: the contract of validate()'s result."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core import Settings

import ragprod.preflight as preflight
from ragprod.errors import ConfigurationError
from ragprod.preflight import Check, Finding, Report, mask_secret, register_check, validate
from ragprod.preflight._check import _REGISTRY
from ragprod.testing import ExtractiveLLM

CANARY = "sk-live-CANARY-9f8e7d6c5b4a3f2e1d0c9b8a"


def test_all_is_sorted() -> None:
    """The package's __all__ is sorted and every name exists."""
    assert list(preflight.__all__) == sorted(preflight.__all__)
    assert all(hasattr(preflight, n) for n in preflight.__all__)


def test_finding_rejects_bad_codes() -> None:
    """A malformed code or a code whose letter disagrees with the severity raises ValueError."""
    with pytest.raises(ValueError, match="not like"):
        Finding("E001", "error", "x")
    with pytest.raises(ValueError, match="disagrees"):
        Finding("RAGPROD-W001", "error", "x")


def test_raise_for_errors_lists_every_error(configured: None) -> None:
    """Several errors become one ConfigurationError with one problem per error."""
    Settings.chunk_size = 100
    Settings.llm = None
    report = validate()
    assert not report.ok
    with pytest.raises(ConfigurationError) as info:
        report.raise_for_errors()
    problems = info.value.problems
    assert len(problems) == len(report.errors) >= 2
    assert any(p.startswith("RAGPROD-E010") for p in problems)
    assert any(p.startswith("RAGPROD-E002") for p in problems)


def test_warnings_do_not_fail(configured: None) -> None:
    """A report with only warnings is ok and raise_for_errors does nothing."""
    report = Report(findings=(Finding("RAGPROD-W013", "warning", "stale"),))
    assert report.ok
    report.raise_for_errors()


def test_errors_sorted_first(configured: None) -> None:
    """Errors come before warnings in the report."""
    Settings.llm = ExtractiveLLM(context_window=4096, num_output=3000)
    Settings.chunk_size = 64
    codes = validate().codes
    assert codes.index("RAGPROD-E010") < codes.index("RAGPROD-W012")


def test_to_json_round_trips(configured: None) -> None:
    """to_json is valid JSON carrying every field of every finding."""
    Settings.chunk_size = 100
    report = validate()
    data = json.loads(report.to_json())
    assert data["ok"] is False
    assert [f["code"] for f in data["findings"]] == list(report.codes)
    assert set(data["findings"][0]) == {"code", "severity", "message", "value", "expected", "fix"}
    assert "chunk-overlap" in data["checks_run"]


def test_user_check_runs_and_can_be_registered(configured: None) -> None:
    """Checks passed to validate() or registered globally run alongside the defaults."""

    def tiny_top_k(ctx: preflight.CheckContext) -> list[Finding]:
        return [Finding("ACME-W001", "warning", "top_k is small", ctx.top_k, ">= 3")]

    report = validate(checks=[Check("acme-top-k", tiny_top_k)])
    assert "ACME-W001" in report.codes
    register_check(Check("acme-top-k", tiny_top_k))
    try:
        assert "ACME-W001" in validate().codes
    finally:
        _REGISTRY.clear()


def test_crashing_check_becomes_a_finding(configured: None) -> None:
    """A check that raises yields RAGPROD-E099 instead of breaking validate()."""

    def boom(ctx: preflight.CheckContext) -> None:
        raise RuntimeError("bug")

    report = validate(checks=[Check("boom", boom)], only=["boom"])
    assert report.codes == ("RAGPROD-E099",)
    assert report.crashed == ("boom",)


def test_invalid_ragprod_env_lists_every_field() -> None:
    """Invalid RAGPROD_* variables are E060 findings naming each variable, never its value."""
    env = {"RAGPROD_PREFLIGHT_TIMEOUT": "-3", "RAGPROD_REDIS_URL": "http://secret-host:1"}
    report = validate(env=env, only=["ragprod-env"])
    assert report.codes == ("RAGPROD-E060", "RAGPROD-E060")
    text = report.to_json()
    assert "RAGPROD_PREFLIGHT_TIMEOUT" in text
    assert "RAGPROD_REDIS_URL" in text
    assert "secret-host" not in text


def test_secret_canary_never_leaks(
    configured: None, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A provider key never appears in findings, JSON, text, logs or the raised error."""
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)

    def leaky(ctx: preflight.CheckContext) -> list[Finding]:
        key = ctx.env["OPENAI_API_KEY"]
        return [Finding("ACME-E001", "error", f"bad key {key}", key, key, f"rotate {key}")]

    with caplog.at_level(logging.DEBUG):
        report = validate(checks=[Check("leaky", leaky)])
    with pytest.raises(ConfigurationError) as info:
        report.raise_for_errors()
    for text in (report.to_json(), report.to_text(), str(info.value), caplog.text):
        assert CANARY not in text
    assert mask_secret(CANARY) in report.to_text()


@given(st.text(min_size=1, max_size=80))
def test_mask_never_reveals_more_than_a_prefix(secret: str) -> None:
    """mask_secret shows at most 3 leading characters and the length."""
    masked = mask_secret(secret)
    assert f"({len(secret)} chars)" in masked
    if len(secret) >= 8:
        assert secret not in masked


@given(
    st.from_regex(r"RAGPROD-[EW][0-9]{3}", fullmatch=True),
    st.text(max_size=40),
    st.one_of(st.none(), st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=4)),
)
def test_findings_serialise_to_json(code: str, message: str, value: object) -> None:
    """Any valid finding survives to_json and back with the same fields."""
    severity = "error" if code[8] == "E" else "warning"
    f = Finding(code, severity, message, value)  # type: ignore[arg-type]
    data = json.loads(Report(findings=(f,)).to_json())["findings"][0]
    assert Finding(**data) == f


def test_findings_are_counted_in_metrics(configured: None) -> None:
    """validate(metrics=...) counts findings by code and severity and times the run."""
    from ragprod.metrics import RagMetrics

    Settings.chunk_size = 100
    metrics = RagMetrics()
    validate(metrics=metrics)
    labels = {"code": "RAGPROD-E010", "severity": "error"}
    assert metrics.value("ragprod_preflight_findings_total", **labels) == 1.0
    assert metrics.value("ragprod_preflight_duration_seconds_count") == 1.0


def test_ragprod_settings_object_replaces_environment(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """validate(RagprodSettings(...)) uses those values instead of RAGPROD_* variables."""
    from ragprod._settings import RagprodSettings

    settings = RagprodSettings(persist_dir=str(tmp_path / "missing"))
    assert validate(settings, only=["persist-dir"]).codes == ("RAGPROD-E033",)
