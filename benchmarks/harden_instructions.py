"""Instructions per query of ``harden()`` vs a bare engine, counted by callgrind.

Wall and CPU time on a shared 2-core VM swing by +-30% between rounds, which
hides a 5-10% overhead. Instruction counts do not: ``valgrind --tool=callgrind``
counts the instructions of every thread, the same for the same input whatever
else the machine does. Each variant runs twice (0 and N queries after the same
setup and warm-up); the difference divided by N is the cost of one query.

Usage (about 20 minutes with two cores; needs ``valgrind`` on PATH)::

    python benchmarks/harden_instructions.py [--queries 200] [--jobs 2]

Run one measurement by hand with ``python benchmarks/harden_instructions.py
--child VARIANT N`` (what valgrind runs).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

VARIANTS = (
    "bare",
    "bare, async",
    "every layer",
    "every layer, inline timeout",
    "every layer, async",
    "every layer, L1 hit",
    "bare, server thread",
    "every layer, server thread",
)


def child(variant: str, queries: int) -> None:
    """Build the demo index, harden it as ``variant`` says, warm up, run ``queries``."""
    import asyncio

    from llama_index.core import VectorStoreIndex
    from opentelemetry.sdk.trace import TracerProvider

    import ragprod
    from ragprod.demo import load_corpus
    from ragprod.testing import ExtractiveLLM, HashEmbedding

    ragprod.configure_logging(stream=open(os.devnull, "w"), cache_loggers=True)  # noqa: SIM115
    index = VectorStoreIndex.from_documents(load_corpus(), embed_model=HashEmbedding(dim=256))
    engine = index.as_query_engine(llm=ExtractiveLLM(), similarity_top_k=3)
    if not variant.startswith("bare"):
        timeout = (
            ragprod.Timeout(60.0, sync="check") if "inline" in variant else ragprod.Timeout(60.0)
        )
        engine = ragprod.harden(
            engine,
            tracing=ragprod.Tracing(tracer_provider=TracerProvider()),
            guard=True,
            pii=ragprod.PIIAnonymizer(key=b"bench-key-0123456789abcdef012345"),
            cache=ragprod.TieredCache.memory(),
            resilience=ragprod.Resilience(timeout=timeout),
            name="bench",
        )
    if variant.endswith("async"):

        async def run() -> None:
            for i in range(20):
                await engine.aquery(f"warm {i}")
            await engine.aquery("How long do refunds take?")
            for i in range(queries):
                await engine.aquery(f"How long do refunds take? #{i}")

        asyncio.run(run())
        return
    hit = variant.endswith("L1 hit")  # the same question every time: served from L1

    def loop() -> None:
        for i in range(20):
            engine.query(f"warm {i}")
        engine.query("How long do refunds take?")
        for i in range(queries):
            engine.query("How long do refunds take?" if hit else f"How long do refunds take? #{i}")

    if variant.endswith("server thread"):
        # As in a threaded server: requests arrive on a thread other than the one
        # that built the index (some tokenizers keep per-thread state that is
        # fastest on the thread that used it first).
        server = threading.Thread(target=loop)
        server.start()
        server.join()
        return
    loop()


def count(variant: str, queries: int, workdir: Path) -> int:
    """Instructions callgrind counted for one child run."""
    out = workdir / f"{variant.replace(' ', '_').replace(',', '')}-{queries}.out"
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            __file__,
            "--child",
            variant,
            str(queries),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if found is None:
        raise RuntimeError(f"callgrind printed no total for {variant}: {proc.stderr[-500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--child", nargs=2, metavar=("VARIANT", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], int(args.child[1]))
        return 0
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    runs = [(v, n) for v in VARIANTS for n in (0, args.queries)]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        counts = pool.map(lambda r: count(r[0], r[1], Path(tmp)), runs)
        totals = dict(zip(runs, counts, strict=True))
    per_query = {v: (totals[(v, args.queries)] - totals[(v, 0)]) / args.queries for v in VARIANTS}
    print("| variant | instructions per query | vs bare |")
    print("|---|---|---|")
    for v in VARIANTS:
        kind = next((k for k in ("async", "server thread") if v.endswith(k)), None)
        base = per_query[f"bare, {kind}"] if kind else per_query["bare"]
        print(f"| {v} | {per_query[v] / 1e6:.2f} M | {per_query[v] / base:.3f}x |")
    print(
        f"\n{args.queries} queries per variant after 21 warm-up queries. Async rows compare"
        " with bare async, server-thread rows with bare called from a non-main thread;"
        " the L1 hit row repeats one question, its ratio is hit / bare miss."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
