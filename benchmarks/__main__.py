"""``python -m benchmarks``: run every benchmark and print a table (see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .run import chart, format_report, log, run

DEFAULT_CHART = Path(__file__).resolve().parent / "results.png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Throughput of ndintake against other APM intake validation pipelines, "
        "streaming RSS, and import time.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small run (~15 s): 4 MB realistic corpus, 5 rounds, RSS at 10 and 50 MB, no chart",
    )
    parser.add_argument("--json", action="store_true", help="print the full report as JSON instead of the table")
    parser.add_argument("--size", type=float, metavar="MB", help="corpus size in MB (default 16; 4 with --quick)")
    parser.add_argument("--repeat", type=int, metavar="N", help="timed rounds (default 9; 5 with --quick)")
    parser.add_argument(
        "--chart",
        metavar="PATH",
        help=f"write a PNG bar chart of MB/s (default {DEFAULT_CHART.name} next to this file, unless --quick)",
    )
    parser.add_argument(
        "--corpus",
        choices=("realistic", "heavy", "agents", "junk", "all"),
        help="which corpus (default: all; realistic with --quick); junk alone runs no RSS or import timing",
    )
    parser.add_argument("--seed", type=int, help="seed of the realistic corpus")
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.size is not None and args.size <= 0:
        parser.error("--size must be positive")

    options = {"quick": args.quick, "corpus": args.corpus, "size_mb": args.size, "repeat": args.repeat}
    if args.seed is not None:
        options["seed"] = args.seed
    report = run(**options)
    chart_path = args.chart or (None if args.quick else str(DEFAULT_CHART))
    if chart_path and report["corpora"]:  # the chart is of MB/s per pipeline: not for junk alone
        try:
            chart(report, chart_path)
            report["chart"] = chart_path
            log(f"chart written to {chart_path}")
        except ImportError:
            log("matplotlib is not installed: no chart (pip install matplotlib)")
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 1 if report["mismatches"] else 0


if __name__ == "__main__":
    sys.exit(main())
