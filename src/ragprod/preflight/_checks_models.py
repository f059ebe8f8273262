"""Checks on the LLM and the embedding model: set, not Mock, keyed, known."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import Any

from ragprod.preflight._check import check, finding
from ragprod.preflight._context import CheckContext
from ragprod.preflight._finding import Finding, mask_secret

__all__ = ["MODEL_CHECKS", "is_placeholder", "module_available"]

#: Provider class-name prefixes and the environment variable their client reads.
PROVIDER_ENV = (
    ("AzureOpenAI", "AZURE_OPENAI_API_KEY"),
    ("OpenAI", "OPENAI_API_KEY"),
    ("Anthropic", "ANTHROPIC_API_KEY"),
    ("Cohere", "COHERE_API_KEY"),
    ("MistralAI", "MISTRAL_API_KEY"),
    ("Gemini", "GOOGLE_API_KEY"),
    ("GoogleGenAI", "GOOGLE_API_KEY"),
    ("Groq", "GROQ_API_KEY"),
    ("Voyage", "VOYAGE_API_KEY"),
)

_PLACEHOLDERS = {
    "changeme", "change-me", "dummy", "fake", "test", "todo", "xxx", "none", "null",
    "placeholder", "secret", "sk-", "sk-...", "sk-xxx", "your-api-key", "your_api_key",
    "<your-api-key>", "<api-key>", "insert-key-here", "replace-me", "replace_me",
}  # fmt: skip


def is_placeholder(value: str) -> bool:
    """Whether ``value`` looks like a placeholder rather than a real credential.

    Example:
        >>> is_placeholder("sk-...") and is_placeholder("<your-api-key>")
        True
        >>> is_placeholder("sk-proj-4f9a0c1e7b2d4a6f8e0c1b3d5f7a9c2e")
        False
    """
    text = value.strip().lower()
    if text in _PLACEHOLDERS or len(text) < 8:
        return True
    if "your" in text and "key" in text:
        return True
    if "replace" in text or "changeme" in text or "xxxx" in text or "..." in text:
        return True
    core = text.removeprefix("sk-")
    return len(set(core)) <= 2


def module_available(name: str) -> bool:
    """Whether ``name`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _class_name(obj: Any) -> str:
    return type(obj).__name__


def _is_mock_llm(llm: Any) -> bool:
    from llama_index.core.llms.mock import MockLLM

    return isinstance(llm, MockLLM)


def _is_mock_embedding(model: Any) -> bool:
    from llama_index.core.embeddings.mock_embed_model import MockEmbedding

    return isinstance(model, MockEmbedding)


def _env_key_findings(ctx: CheckContext, var: str, what: str, code: str) -> Iterator[Finding]:
    value = ctx.env.get(var)
    if value is None or not value.strip():
        yield finding(
            code,
            f"{what} needs {var}, which is not set",
            value=mask_secret(value),
            expected=f"{var} set to a real key",
            fix=f"export {var}, or configure the model with an explicit api_key",
        )
    elif is_placeholder(value):
        yield finding(
            code,
            f"{var} holds a placeholder, not a key",
            value=mask_secret(value),
            expected="a real provider key",
            fix=f"set {var} to the provider key from your secret store",
        )


def _provider_key(ctx: CheckContext, model: Any, role: str) -> Iterator[Finding]:
    """E006: a provider model's key (attribute or environment) is present and real."""
    if model is None:
        return
    name = _class_name(model)
    env_var = next((var for prefix, var in PROVIDER_ENV if name.startswith(prefix)), None)
    key = getattr(model, "api_key", None)
    if key is not None and hasattr(key, "get_secret_value"):
        key = key.get_secret_value()
    if isinstance(key, str) and key.strip():
        if is_placeholder(key):
            yield finding(
                "RAGPROD-E006",
                f"the {role} ({name}) has a placeholder api_key",
                value=mask_secret(key),
                expected="a real provider key",
                fix="load the key from your secret store, not from example config",
            )
        return
    if env_var is not None:
        yield from _env_key_findings(ctx, env_var, f"the {role} ({name})", "RAGPROD-E006")


@check("llm", "RAGPROD-E001", "RAGPROD-W001", "RAGPROD-E002", "RAGPROD-E003", "RAGPROD-E006")
def check_llm(ctx: CheckContext) -> Iterator[Finding]:
    """The LLM is set explicitly, is not MockLLM, has a key and known metadata."""
    llm = ctx.llm
    if llm is None:
        if ctx.env.get("IS_TESTING"):
            yield finding(
                "RAGPROD-E002",
                "no LLM set and IS_TESTING is set: LlamaIndex will use MockLLM",
                value="IS_TESTING",
                expected="an explicit Settings.llm",
                fix="set Settings.llm (or pass llm= to the engine); unset IS_TESTING",
            )
            return
        if not module_available("llama_index.llms.openai"):
            yield finding(
                "RAGPROD-E001",
                "no LLM set: the lazy default (OpenAI) is not installed; the first query "
                "raises ImportError",
                value=ctx.llm_source,
                expected="an explicit Settings.llm or engine llm",
                fix="set Settings.llm = <your LLM> at startup",
            )
            return
        key_findings = list(_env_key_findings(ctx, "OPENAI_API_KEY", "the lazy default LLM "
                                              "(OpenAI)", "RAGPROD-E001"))  # fmt: skip
        if key_findings:
            yield from key_findings
            return
        yield finding(
            "RAGPROD-W001",
            "no LLM set explicitly: LlamaIndex will lazily build its default OpenAI model",
            value=ctx.llm_source,
            expected="an explicit Settings.llm",
            fix="set Settings.llm so the model is chosen by you, not by a default",
        )
        return
    if _is_mock_llm(llm) and not ctx.allow_mock:
        yield finding(
            "RAGPROD-E002",
            "the LLM is MockLLM: answers will echo the prompt (Settings.llm = None does this)",
            value=_class_name(llm),
            expected="a real LLM",
            fix="set Settings.llm to a real model, or validate(allow_mock=True) in tests",
        )
        return
    try:
        llm.metadata  # noqa: B018  (unknown model names raise here, at first use)
    except Exception as exc:
        yield finding(
            "RAGPROD-E003",
            f"the LLM ({_class_name(llm)}) cannot report its metadata ({type(exc).__name__}); "
            "an unknown model name?",
            value=str(getattr(llm, "model", None) or getattr(llm, "model_name", None)),
            expected="a model name the provider class knows",
            fix="check the model name or set context_window explicitly",
        )
    yield from _provider_key(ctx, llm, "LLM")


@check("embed-model", "RAGPROD-E004", "RAGPROD-W004", "RAGPROD-E005", "RAGPROD-E006")
def check_embed_model(ctx: CheckContext) -> Iterator[Finding]:
    """The embedding model is set explicitly, is not MockEmbedding, and has a key."""
    model = ctx.embed_model
    if model is None:
        if ctx.env.get("IS_TESTING"):
            yield finding(
                "RAGPROD-E005",
                "no embedding model set and IS_TESTING is set: LlamaIndex will use "
                "MockEmbedding(8)",
                value="IS_TESTING",
                expected="an explicit Settings.embed_model",
                fix="set Settings.embed_model; unset IS_TESTING",
            )
            return
        if not module_available("llama_index.embeddings.openai"):
            yield finding(
                "RAGPROD-E004",
                "no embedding model set: the lazy default (OpenAI) is not installed; the "
                "first ingestion or query raises ImportError",
                value=ctx.embed_model_source,
                expected="an explicit Settings.embed_model",
                fix="set Settings.embed_model = <your model> at startup",
            )
            return
        key_findings = list(_env_key_findings(ctx, "OPENAI_API_KEY", "the lazy default "
                                              "embedding model", "RAGPROD-E004"))  # fmt: skip
        if key_findings:
            yield from key_findings
            return
        yield finding(
            "RAGPROD-W004",
            "no embedding model set explicitly: LlamaIndex will lazily use OpenAIEmbedding",
            value=ctx.embed_model_source,
            expected="an explicit Settings.embed_model",
            fix="set Settings.embed_model explicitly; an index must be queried with the "
            "model that built it",
        )
        return
    if _is_mock_embedding(model) and not ctx.allow_mock:
        dim = getattr(model, "embed_dim", None)
        yield finding(
            "RAGPROD-E005",
            f"the embedding model is MockEmbedding(embed_dim={dim}): retrieval is "
            "meaningless (Settings.embed_model = None does this)",
            value=_class_name(model),
            expected="a real embedding model",
            fix="set Settings.embed_model to a real model, or validate(allow_mock=True)",
        )
        return
    yield from _provider_key(ctx, model, "embedding model")


MODEL_CHECKS = (check_llm, check_embed_model)
