"""``python -m bench [NAME ...|all] [--quick] [--out FILE]``: run benchmarks, print JSON."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from bench.registry import RESULTS_DIR, available, in_all, run_all


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the Custody Ledger benchmarks and print one JSON document. Every "
        "figure is reported next to a physical reference measured in the same run.",
    )
    parser.add_argument(
        "benchmarks",
        nargs="*",
        default=["all"],
        metavar="NAME",
        help=f"benchmarks to run: {', '.join(names)}, or 'all' (the default).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="use small sizes; finishes in seconds (smoke test)."
    )
    parser.add_argument(
        "--entries", type=int, metavar="N",
        help="scale: entries in the synthetic log (default 10,000,000; 20,000 with --quick).",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"also write the JSON document to this file (results usually go in {RESULTS_DIR}).",
    )
    args = parser.parse_args(argv)
    selected = [n for n in names if in_all(n)] if "all" in args.benchmarks \
        else args.benchmarks
    unknown = [n for n in selected if n not in names]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(names)}")

    if args.entries is not None:
        if args.entries < 1_000:
            parser.error("--entries must be at least 1000")
        os.environ["BENCH_SCALE_ENTRIES"] = str(args.entries)  # read by bench/scale.py
    doc = run_all(selected, args.quick, lambda msg: print(msg, file=sys.stderr, flush=True))
    text = json.dumps(doc, indent=2, sort_keys=False)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
