"""Run every ``benchmarks/bench_*.py`` and print a Markdown table of ratios.

Usage: ``python benchmarks/run.py [--quick] [-k SUBSTRING] [--out PATH]``.
Each bench module defines ``run(suite: Suite) -> None``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import Suite, markdown  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few short rounds (smoke test)")
    parser.add_argument("-k", default="", help="only bench modules whose name contains this")
    parser.add_argument("--out", default=str(HERE / "results" / "latest.md"))
    args = parser.parse_args(argv)
    suite = Suite(quick=args.quick)
    started = time.perf_counter()
    for path in sorted(HERE.glob("bench_*.py")):
        if args.k not in path.stem:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        suite.area = path.stem.removeprefix("bench_")
        print(f"running {path.name} ...", file=sys.stderr, flush=True)
        module.run(suite)
    table = markdown(suite.results)
    header = (
        f"# ragprod benchmarks\n\nPython {platform.python_version()} on {platform.machine()}, "
        f"{'quick' if args.quick else 'full'} run, {time.perf_counter() - started:.1f} s. "
        "Ratios are ragprod / baseline (lower is better); medians of interleaved batches.\n\n"
    )
    print(table)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + table + "\n", encoding="utf-8")
    print(f"\nwritten to {out}", file=sys.stderr)
    return 0 if suite.results else 1


if __name__ == "__main__":
    raise SystemExit(main())
