"""Regression matrix, models: each LlamaIndex misconfiguration yields its finding code."""

from __future__ import annotations

import pytest
from llama_index.core import Settings
from llama_index.core.embeddings.mock_embed_model import MockEmbedding
from llama_index.core.llms.mock import MockLLM
from pydantic import Field

from ragprod.preflight import _checks_models as models
from ragprod.preflight import validate
from ragprod.testing import ExtractiveLLM, HashEmbedding

REAL_LOOKING_KEY = "sk-proj-7Qm2Zr9Lx4Vb8Nc1Kd6Hf3Jt5Wy0Pa2Se"


class OpenAIStandIn(ExtractiveLLM):
    """An LLM whose class name marks it as an OpenAI client, with an api_key field."""

    api_key: str | None = Field(default=None)


def test_nothing_set_reports_lazy_default_without_resolving_it() -> None:
    """With no LLM or embed model set, validate reports E001/E004 and leaves Settings lazy."""
    report = validate(only=["llm", "embed-model"])
    assert set(report.codes) == {"RAGPROD-E001", "RAGPROD-E004"}
    assert Settings._llm is None
    assert Settings._embed_model is None
    assert Settings._prompt_helper is None


def test_lazy_openai_default_without_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """With llama-index-llms-openai importable but OPENAI_API_KEY unset, E001 names the var."""
    monkeypatch.setattr(models, "module_available", lambda name: True)
    report = validate(only=["llm"], env={})
    (f,) = report.findings
    assert f.code == "RAGPROD-E001"
    assert "OPENAI_API_KEY" in f.message


def test_lazy_openai_default_with_placeholder_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """A placeholder OPENAI_API_KEY is an error and its value is masked."""
    monkeypatch.setattr(models, "module_available", lambda name: True)
    report = validate(only=["llm"], env={"OPENAI_API_KEY": "sk-your-api-key-here"})
    (f,) = report.findings
    assert f.code == "RAGPROD-E001"
    assert "sk-your-api-key-here" not in report.to_json()


def test_lazy_openai_default_with_key_is_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    """A real-looking key leaves only W001: the model is chosen by a default, not by you."""
    monkeypatch.setattr(models, "module_available", lambda name: True)
    report = validate(only=["llm"], env={"OPENAI_API_KEY": REAL_LOOKING_KEY})
    assert report.codes == ("RAGPROD-W001",)
    assert report.ok
    assert REAL_LOOKING_KEY not in report.to_json()


def test_llm_none_becomes_mock_llm() -> None:
    """Settings.llm = None silently installs MockLLM; validate reports E002."""
    Settings.llm = None
    assert isinstance(Settings._llm, MockLLM)
    assert validate(only=["llm"]).codes == ("RAGPROD-E002",)


def test_mock_allowed_in_tests() -> None:
    """allow_mock=True accepts MockLLM and MockEmbedding."""
    Settings.llm = None
    Settings.embed_model = None
    assert validate(only=["llm", "embed-model"], allow_mock=True).findings == ()


def test_allow_mock_from_environment() -> None:
    """RAGPROD_ALLOW_MOCK=true has the same effect as allow_mock=True."""
    Settings.llm = None
    assert validate(only=["llm"], env={"RAGPROD_ALLOW_MOCK": "true"}).ok


def test_is_testing_env_means_mock() -> None:
    """IS_TESTING makes LlamaIndex's lazy defaults Mock models: E002 and E005."""
    report = validate(only=["llm", "embed-model"], env={"IS_TESTING": "1"})
    assert set(report.codes) == {"RAGPROD-E002", "RAGPROD-E005"}


def test_embed_model_none_becomes_one_dimension_mock() -> None:
    """Settings.embed_model = None silently installs MockEmbedding(1); validate reports E005."""
    Settings.embed_model = None
    assert isinstance(Settings._embed_model, MockEmbedding)
    assert Settings._embed_model.embed_dim == 1
    report = validate(only=["embed-model"])
    assert report.codes == ("RAGPROD-E005",)
    assert "embed_dim=1" in report.findings[0].message


def test_explicit_real_models_pass(configured: None) -> None:
    """Explicit offline models produce no model findings."""
    assert validate(only=["llm", "embed-model"]).findings == ()


def test_engine_llm_wins_over_settings(index: object) -> None:
    """The engine's own LLM is checked, not Settings': a MockLLM engine is reported."""
    engine = index.as_query_engine(llm=MockLLM())  # type: ignore[attr-defined]
    assert validate(engine=engine, only=["llm"]).codes == ("RAGPROD-E002",)


def test_unknown_model_name_is_reported(configured: None) -> None:
    """An LLM whose metadata raises (unknown model name) yields E003."""

    class UnknownModel(ExtractiveLLM):
        @property
        def metadata(self):  # type: ignore[no-untyped-def,override]
            raise ValueError("Unknown model 'gpt-5-typo'")

    Settings.llm = UnknownModel()
    assert validate(only=["llm"]).codes == ("RAGPROD-E003",)


@pytest.mark.parametrize("key", ["sk-...", "<your-api-key>", "changeme", "sk-xxxxxxxxxxxxxxxx"])
def test_placeholder_api_key_on_model(key: str) -> None:
    """A placeholder api_key attribute is E006 and the value is masked."""
    Settings.llm = OpenAIStandIn(api_key=key)
    report = validate(only=["llm"], env={})
    assert report.codes == ("RAGPROD-E006",)
    assert f'"{key}"' not in report.to_json()


def test_provider_without_key_anywhere() -> None:
    """An OpenAI-named model without api_key and without OPENAI_API_KEY is E006."""
    Settings.llm = OpenAIStandIn()
    report = validate(only=["llm"], env={})
    assert report.codes == ("RAGPROD-E006",)
    assert "OPENAI_API_KEY" in report.findings[0].message


def test_provider_with_real_key_passes() -> None:
    """A real-looking key on the model passes."""
    Settings.llm = OpenAIStandIn(api_key=REAL_LOOKING_KEY)
    assert validate(only=["llm"], env={}).findings == ()


def test_placeholder_detection() -> None:
    """is_placeholder separates template values from real keys."""
    assert models.is_placeholder("YOUR_OPENAI_KEY")
    assert models.is_placeholder("sk-REPLACE-ME-0000")
    assert not models.is_placeholder(REAL_LOOKING_KEY)


def test_hash_embedding_is_not_mock() -> None:
    """Deterministic non-Mock embeddings are accepted as real models."""
    Settings.embed_model = HashEmbedding(dim=32)
    assert validate(only=["embed-model"]).ok
