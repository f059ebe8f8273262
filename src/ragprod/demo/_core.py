"""The demo's frame: a context shared by sections, timing, and text/JSON output."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any, TextIO

from llama_index.core import Document, VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine

from ragprod.testing import ExtractiveLLM, HashEmbedding

if TYPE_CHECKING:
    from ragprod.demo._hardened import Hardened

__all__ = ["DemoContext", "Section", "load_corpus"]


def load_corpus() -> list[Document]:
    """The bundled demo corpus as LlamaIndex documents (ids are stable)."""
    raw = resources.files("ragprod.demo").joinpath("corpus.json").read_text(encoding="utf-8")
    return [
        Document(
            text=item["text"],
            doc_id=item["id"],
            metadata={"title": item["title"], "kind": item["kind"]},
            excluded_embed_metadata_keys=["kind"],
            excluded_llm_metadata_keys=["kind", "title"],
        )
        for item in json.loads(raw)
    ]


@dataclass
class DemoContext:
    """What the sections share: the index, the engines, options and the report.

    ``hardened`` is set by the ``harden`` section for the sections after it;
    ``logs`` holds the structlog events of the running section; ``cleanup``
    is closed when the demo ends (it uninstalls what sections installed and
    deletes the demo's Redis keys).
    """

    redis_url: str | None = None
    as_json: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)
    index: VectorStoreIndex | None = None
    engine: BaseQueryEngine | None = None
    embed_model: HashEmbedding = field(default_factory=lambda: HashEmbedding(dim=256))
    llm: ExtractiveLLM = field(default_factory=ExtractiveLLM)
    report: dict[str, Any] = field(default_factory=dict)
    hardened: Hardened | None = None
    logs: list[dict[str, Any]] = field(default_factory=list)
    cleanup: ExitStack = field(default_factory=ExitStack)
    _section: str = ""

    def say(self, text: str = "") -> None:
        """Print a line of the human-readable walkthrough (silent with --json)."""
        if not self.as_json:
            print(text, file=self.out)

    def record(self, key: str, value: Any) -> None:
        """Add a machine-readable fact to the current section's report."""
        self.report.setdefault(self._section, {})[key] = value

    @contextmanager
    def timed(self) -> Iterator[dict[str, float]]:
        """Time a block; the dict gets ``ms`` when the block ends."""
        result: dict[str, float] = {}
        start = time.perf_counter()
        try:
            yield result
        finally:
            result["ms"] = (time.perf_counter() - start) * 1000


@dataclass(frozen=True)
class Section:
    """One step of the walkthrough: a title and a function of the context."""

    key: str
    title: str
    run: Callable[[DemoContext], None]
