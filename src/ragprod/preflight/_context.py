"""What checks see: the objects under validation, resolved without side effects.

LlamaIndex's ``Settings`` resolves its LLM and embedding model lazily: reading
``Settings.llm`` before one was set imports and builds an OpenAI client, and
reading ``Settings.context_window`` caches a prompt helper. A preflight check
must not change what it inspects, so :class:`CheckContext` reads the private slots
(``Settings._llm``, ``Settings._embed_model``, ``Settings._node_parser``, ...)
and digs the live objects out of query engines the same way.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core import Settings
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K

__all__ = ["CheckContext", "inner_engine", "secret_values"]

#: Environment variables that hold provider credentials (never printed).
SECRET_ENV_VARS = (
    "OPENAI_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "COHERE_API_KEY",
    "MISTRAL_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "GROQ_API_KEY",
    "VOYAGE_API_KEY",
    "HF_TOKEN",
    "RAGPROD_KEYRING",
    "RAGPROD_ENCRYPTION_KEY",
)


def inner_engine(engine: Any, depth: int = 8) -> Any:
    """Unwrap ragprod shells (``StepQueryEngine`` and friends) to the user's engine."""
    current = engine
    for _ in range(depth):
        nxt = getattr(current, "_engine", None) or getattr(current, "_query_engine", None)
        if nxt is None or nxt is current:
            break
        current = nxt
    return current


def secret_values(objects: Sequence[Any], env: Mapping[str, str]) -> tuple[str, ...]:
    """Secrets a report must never contain: provider keys in env and on model objects."""
    found: set[str] = set()
    for name in SECRET_ENV_VARS:
        value = env.get(name)
        if value and len(value) >= 8:
            found.add(value)
    for obj in objects:
        for attr in ("api_key", "_api_key", "token", "password"):
            value = getattr(obj, attr, None)
            if value is not None and hasattr(value, "get_secret_value"):
                value = value.get_secret_value()
            if isinstance(value, str) and len(value) >= 8:
                found.add(value)
    return tuple(sorted(found, key=len, reverse=True))


@dataclass
class CheckContext:
    """The inputs of one :func:`~ragprod.preflight.validate` run, as checks see them.

    Attributes hold what the caller passed; the ``llm``, ``embed_model``,
    ``node_parsers``, ``top_k`` ... properties resolve the live values without
    triggering LlamaIndex's lazy defaults. ``env`` is the environment to read
    (``os.environ`` unless injected); ``probes`` tells whether network checks
    may run, each bounded by ``timeout`` seconds.
    """

    settings: Any = None
    engine: Any = None
    index: Any = None
    storage_context: Any = None
    vector_store: Any = None
    cache: Any = None
    keyring: Any = None
    manifest: Any = None
    probes: bool = False
    timeout: float = 1.0
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    documents: Sequence[Any] = ()
    allow_mock: bool = False
    persist_dir: str | None = None
    redis_urls: Sequence[str] = ()
    pipeline: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.settings is None:
            self.settings = Settings
        self._engine = inner_engine(self.engine) if self.engine is not None else None

    # -- the engine's parts ------------------------------------------------

    @property
    def synthesizer(self) -> Any:
        """The engine's response synthesizer, if it has one."""
        return getattr(self._engine, "_response_synthesizer", None)

    @property
    def retriever(self) -> Any:
        """The engine's retriever, if it has one."""
        return getattr(self._engine, "_retriever", None)

    @property
    def llm_source(self) -> str:
        """Where :attr:`llm` came from: ``"engine"``, ``"settings"`` or ``"lazy default"``."""
        if getattr(self.synthesizer, "_llm", None) is not None:
            return "engine"
        if getattr(self.settings, "_llm", None) is not None:
            return "settings"
        return "lazy default"

    @property
    def llm(self) -> Any:
        """The LLM queries will use, or None when LlamaIndex would resolve its default."""
        llm = getattr(self.synthesizer, "_llm", None)
        if llm is not None:
            return llm
        return getattr(self.settings, "_llm", None)

    @property
    def embed_model_source(self) -> str:
        """Where :attr:`embed_model` came from (``"engine"``, ``"index"``, ``"settings"``...)."""
        if getattr(self.retriever, "_embed_model", None) is not None:
            return "engine"
        if getattr(self.index, "_embed_model", None) is not None:
            return "index"
        if getattr(self.settings, "_embed_model", None) is not None:
            return "settings"
        return "lazy default"

    @property
    def embed_model(self) -> Any:
        """The embedding model queries will use, or None for LlamaIndex's lazy default."""
        for owner in (self.retriever, self.index):
            model = getattr(owner, "_embed_model", None)
            if model is not None:
                return model
        return getattr(self.settings, "_embed_model", None)

    @property
    def index_obj(self) -> Any:
        """The index: as passed, or the one behind the engine's retriever."""
        if self.index is not None:
            return self.index
        return getattr(self.retriever, "_index", None)

    @property
    def store(self) -> Any:
        """The vector store: as passed, or the index's / storage context's."""
        if self.vector_store is not None:
            return self.vector_store
        index = self.index_obj
        if index is not None:
            store = getattr(index, "_vector_store", None)
            if store is not None:
                return store
        if self.storage_context is not None:
            return getattr(self.storage_context, "vector_store", None)
        return None

    @property
    def storage(self) -> Any:
        """The storage context: as passed, or the index's."""
        if self.storage_context is not None:
            return self.storage_context
        return getattr(self.index_obj, "_storage_context", None)

    @property
    def node_parsers(self) -> list[tuple[str, Any]]:
        """``(where, parser)`` for every live parser with chunk settings."""
        found: list[tuple[str, Any]] = []
        seen: set[int] = set()

        def add(where: str, obj: Any) -> None:
            if obj is None or id(obj) in seen or not hasattr(obj, "chunk_size"):
                return
            seen.add(id(obj))
            found.append((where, obj))

        add("Settings.node_parser", getattr(self.settings, "_node_parser", None))
        for i, t in enumerate(getattr(self.settings, "_transformations", None) or ()):
            add(f"Settings.transformations[{i}]", t)
        for i, t in enumerate(getattr(self.index_obj, "_transformations", None) or ()):
            add(f"index.transformations[{i}]", t)
        for i, t in enumerate(getattr(self.pipeline, "transformations", None) or ()):
            add(f"pipeline.transformations[{i}]", t)
        return found

    @property
    def chunk_size(self) -> int:
        """The chunk size ingestion uses (the first live parser's, else 1024)."""
        parsers = self.node_parsers
        if parsers:
            return int(parsers[0][1].chunk_size)
        return 1024

    @property
    def top_k(self) -> int:
        """``similarity_top_k`` of the engine's retriever (LlamaIndex's default 2)."""
        value = getattr(self.retriever, "_similarity_top_k", None)
        return int(value) if isinstance(value, int) else DEFAULT_SIMILARITY_TOP_K

    @property
    def prompt_helper(self) -> Any:
        """The prompt helper the synthesizer uses, or Settings' cached one, or None."""
        helper = getattr(self.synthesizer, "_prompt_helper", None)
        if helper is not None:
            return helper
        return getattr(self.settings, "_prompt_helper", None)

    def secrets(self) -> tuple[str, ...]:
        """Every secret value this context can see (to mask in findings)."""
        return secret_values([self.llm, self.embed_model], self.env)
