"""Demo section: the docstore, index store and vectors encrypted on disk."""

from __future__ import annotations

import tempfile
from pathlib import Path

from llama_index.core import VectorStoreIndex, load_index_from_storage

from ragprod.crypto import Keyring, encrypted_storage_context
from ragprod.demo._core import DemoContext, load_corpus
from ragprod.errors import CryptoError

__all__ = ["encryption"]

# What to look for on disk, and how to name it without printing it.
_PROBES = {
    "a customer's name": "Priya",
    "a password from a ticket": "Hunter2secret",
    "the word 'refund'": "refund",
    "the word 'Redis'": "Redis",
}


def encryption(ctx: DemoContext) -> None:
    """Persist an encrypted index, show no plaintext on disk, reload it, query it."""
    keyring = Keyring.generate()
    with tempfile.TemporaryDirectory(prefix="ragprod-demo-") as tmp:
        storage = encrypted_storage_context(keyring)
        with ctx.timed() as t:
            index = VectorStoreIndex.from_documents(
                load_corpus(), storage_context=storage, embed_model=ctx.embed_model
            )
            storage.persist(persist_dir=tmp)
        files = sorted(Path(tmp).iterdir())
        blob = b"".join(f.read_bytes() for f in files)
        leaks = {label: blob.count(word.encode()) for label, word in _PROBES.items()}
        ctx.say(f"  built and persisted {len(index.docstore.docs)} nodes in {t['ms']:.0f} ms")
        for f in files:
            ctx.say(f"  {f.name}: {f.stat().st_size} bytes, mode {oct(f.stat().st_mode & 0o777)}")
        ctx.say(f"  plaintext probes found on disk: {leaks} (all zero = sealed)")
        with ctx.timed() as t:
            loaded = encrypted_storage_context(keyring, persist_dir=tmp)
            reloaded = load_index_from_storage(loaded, embed_model=ctx.embed_model)
            answer = reloaded.as_query_engine(llm=ctx.llm).query("How long do refunds take?")
        ctx.say(f"  reloaded with the keyring and queried in {t['ms']:.0f} ms: {answer}")
        try:
            encrypted_storage_context(Keyring.generate(), persist_dir=tmp)
            refused = "no"
        except CryptoError as exc:
            refused = type(exc).__name__
        ctx.say(f"  opening with another keyring: refused with {refused}")
    ctx.record("files", [f.name for f in files])
    ctx.record("plaintext_hits", sum(leaks.values()))
    ctx.record("wrong_key", refused)
