"""Preflight in a service's startup: validate, write/check the manifest, serve /health and /ready.

Run: ``python examples/preflight_example.py``. Offline; uses Redis at ``REDIS_URL``
(default ``redis://127.0.0.1:6379/0``) for the readiness probe and reports it as
failed, not crashed, when Redis is not there.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

from llama_index.core import Document, Settings, VectorStoreIndex
from llama_index.core.node_parser import SentenceSplitter

from ragprod.errors import ConfigurationError
from ragprod.preflight import HealthCheck, validate, write_manifest
from ragprod.testing import ExtractiveLLM, HashEmbedding

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

DOCS = [
    Document(text="Refunds are paid within five business days.", doc_id="faq/refunds.md"),
    Document(text="Redis failover promotes the replica within thirty seconds.", doc_id="ops/redis"),
    Document(text="Encryption keys rotate every ninety days.", doc_id="sec/keys.md"),
]


def build(workdir: Path) -> Path:
    """Build time: ingest, persist, and record the manifest next to the index."""
    index = VectorStoreIndex.from_documents(DOCS)
    index.storage_context.persist(str(workdir / "storage"))
    write_manifest(index, workdir / "manifest.json")
    return workdir / "manifest.json"


def main() -> int:
    # The configuration the service means to run with.
    Settings.llm = ExtractiveLLM()
    Settings.embed_model = HashEmbedding(dim=128)
    Settings.node_parser = SentenceSplitter(chunk_size=512, chunk_overlap=50)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        manifest = build(workdir)

        # 1. A mistake someone makes later: shrink chunks through the setter.
        Settings.chunk_size = 128  # overlap stays 50: fine; now make it worse
        Settings.chunk_overlap = 200
        report = validate(persist_dir=workdir / "storage", manifest=manifest, documents=DOCS)
        print(report.to_text())
        try:
            report.raise_for_errors()
        except ConfigurationError as exc:
            print(f"startup refused: {len(exc.problems)} problem(s)")

        # 2. Fixed: the service starts. Settings.transformations cached the old parser at
        #    first ingestion, so it must be replaced too (validate() warns W016 otherwise).
        Settings.node_parser = SentenceSplitter(chunk_size=512, chunk_overlap=50)
        Settings.transformations = [Settings.node_parser]
        report = validate(
            persist_dir=workdir / "storage", manifest=manifest, documents=DOCS, probes=True,
            redis_urls=[REDIS_URL], timeout=1.0,
        )  # fmt: skip
        print(report.to_text())
        print(f"validate() took {report.duration_s * 1000:.1f} ms")

        # 3. Serving with another embedding model of the same dimension is refused.
        Settings.embed_model = HashEmbedding(dim=128, ngrams=2)
        swapped = validate(manifest=manifest, only=["manifest"])
        print("after a model swap:", ", ".join(swapped.codes))
        Settings.embed_model = HashEmbedding(dim=128)

        # 4. Readiness: Redis may be up or down; either way we get a structured answer.
        health = HealthCheck(redis=[REDIS_URL], embed_model=Settings.embed_model, timeout=1.0)
        sync_status = health.ready()
        async_status = asyncio.run(health.aready())
        health.close()
        print("ready:", sync_status.to_dict())
        print("aready status:", async_status.status, "HTTP", async_status.http_status)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
