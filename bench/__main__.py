"""``python -m bench`` (``make bench``): run every benchmark, print a table, write bench/results.{json,md}."""

from __future__ import annotations

import argparse
import time
from typing import Any

from bench import client_cost, cold_start, end_to_end, report, retention_scale


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (medians; default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results.* alone")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results: dict[str, Any] = {"environment": report.environment()}
    print("1/4 client cost per command ...", flush=True)
    results["client_cost"] = client_cost.run(calls=300, runs=args.runs)
    print("2/4 cold start ...", flush=True)
    results["cold_start"] = cold_start.run(runs=max(args.runs, 7))
    print("3/4 end to end ...", flush=True)
    results["end_to_end"] = end_to_end.run(commands=400, runs=args.runs)
    print("4/4 retention at scale ...", flush=True)
    results["retention_scale"] = retention_scale.run(jobs=100, tasks_per_job=1000, runs=max(args.runs, 7))
    results["elapsed_s"] = time.perf_counter() - started
    print()
    report.print_table(results)
    print(f"\nmake bench: {results['elapsed_s']:.0f} s")
    if not args.no_write:
        report.write(results, documents=report.DOCUMENTS)
        print("wrote bench/results.json and bench/results.md")


if __name__ == "__main__":
    main()
