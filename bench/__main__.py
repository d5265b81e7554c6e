"""``python -m bench`` (``make bench``): run the benchmarks, print a table, write bench/results.{json,md}.

The exit status is 1 when a target in ``bench.report.TARGETS`` is missed or a benchmark failed (results
are written first; a benchmark that raised is recorded as ``{"error": ...}`` and the others still run).
``make bench-docs`` then copies the results into docs/benchmarks.md; nothing here touches the README.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from bench import binding_cost, client_cost, cold_start, end_to_end, fan_out, instance_throughput, report


def benchmarks(runs: int) -> dict[str, tuple[str, Callable[[], dict[str, Any]]]]:
    """Name -> (title, run), in the order ``make bench`` runs them."""
    return {
        "client_cost": ("client cost per command", lambda: client_cost.run(calls=300, runs=runs)),
        "cold_start": ("cold start", lambda: cold_start.run(runs=max(runs, 15))),
        "end_to_end": ("end to end", lambda: end_to_end.run(commands=400, runs=runs)),
        "binding_path": ("the Functions binding path's cost", lambda: binding_cost.run(messages=200, runs=runs)),
        "fan_out": (
            "fan-out of a selector over 100 000 tasks",
            lambda: fan_out.run(jobs=100, tasks_per_job=1000, small_jobs=25, runs=runs),
        ),
        "instance_throughput": (
            "instance throughput under network latency",
            lambda: instance_throughput.run(commands=400, runs=runs),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement (medians; default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave bench/results.* alone")
    parser.add_argument(
        "--only", action="append", choices=list(benchmarks(1)), help="run only this benchmark (repeatable; print only)"
    )
    args = parser.parse_args(argv)
    chosen = {name: bench for name, bench in benchmarks(args.runs).items() if not args.only or name in args.only}
    started = time.perf_counter()
    results: dict[str, Any] = {"environment": report.environment()}
    for number, (name, (title, run)) in enumerate(chosen.items(), 1):
        print(f"{number}/{len(chosen)} {title} ...", flush=True)
        try:
            results[name] = run()
        except Exception as exc:  # the others still run; this one counts as every one of its targets missed
            traceback.print_exc()
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    report.finish(results, time.perf_counter() - started)
    print()
    report.print_table(results)
    print(f"\nmake bench: {results['elapsed_s']:.0f} s")
    if not args.no_write and not args.only:
        report.write(results)
        print("wrote bench/results.json and bench/results.md (make bench-docs copies them into docs/benchmarks.md)")
    return 1 if report.missed(results) else 0


if __name__ == "__main__":
    sys.exit(main())
