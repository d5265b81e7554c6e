"""Results: the printed table, bench/results.json and bench/results.md."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

BENCH: Final = Path(__file__).resolve().parent
PACKAGES: Final = (
    "azure-batch",
    "azure-core",
    "azure-identity",
    "azure-servicebus",
    "azure-functions",
    "azurefunctions-extensions-bindings-servicebus",
    "requests",
    "urllib3",
)
TARGETS: Final = {
    "client_vs_sdk": 1.3,
    "client_vs_requests": 0.9,
    "cold_start_ratio": 1.1,
    "retention_ratio": 1.2,
    "retention_rss_mib": 50.0,
}


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH.parent, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": versions,
    }


def _ok(passed: bool) -> str:
    return "met" if passed else "MISSED"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(benchmark, measured, ratio, target) rows of the summary table."""
    table: list[tuple[str, str, str, str]] = []
    client = results.get("client_cost")
    if client:
        for action, figures in client["actions"].items():
            product, sdk, bare = figures["product"], figures["sdk"], figures["requests"]
            vs_sdk, vs_bare = figures["throughput_vs_sdk"], figures["throughput_vs_requests"]
            table.append(
                (
                    f"1 client cost: {action}",
                    f"product {product['per_second']:.0f}/s {product['cpu_us_per_command']:.0f} µs CPU; "
                    f"sdk {sdk['per_second']:.0f}/s {sdk['cpu_us_per_command']:.0f} µs; "
                    f"requests {bare['per_second']:.0f}/s {bare['cpu_us_per_command']:.0f} µs",
                    f"{vs_sdk:.2f}x sdk, {vs_bare:.2f}x requests",
                    f"≥ 1.3x sdk ({_ok(vs_sdk >= TARGETS['client_vs_sdk'])}), "
                    f"≥ 0.90x requests ({_ok(vs_bare >= TARGETS['client_vs_requests'])})",
                )
            )
    cold = results.get("cold_start")
    if cold:
        table.append(
            (
                "2 cold start",
                f"function_app {cold['function_app_ms']:.0f} ms; dependencies {cold['dependencies_ms']:.0f} ms; "
                f"own modules {cold['importtime']['own_self_ms']:.1f} ms self; "
                f"network at import: {'yes' if cold['network_at_import'] else 'no'}",
                f"{cold['ratio']:.2f}x",
                f"≤ 1.1x ({_ok(cold['ratio'] <= TARGETS['cold_start_ratio'])}), "
                f"no network ({_ok(not cold['network_at_import'])})",
            )
        )
    e2e = results.get("end_to_end")
    if e2e:
        table.append(
            (
                "3 end to end (16 concurrent)",
                f"system {e2e['system_per_second']:.0f} cmd/s; peer {e2e['peer_round_trips_per_second']:.0f} "
                f"round trips/s (= {e2e['peer_capacity_commands_per_second']:.0f} cmd/s at 2 per command); "
                f"emulator {e2e['emulator_calls_per_second']:.0f} calls/s",
                f"{e2e['ratio_vs_bound']:.2f}x of {e2e['bound_by']}",
                f"report (bound by {e2e['bound_by']})",
            )
        )
    retention = results.get("retention_scale")
    if retention:
        table.append(
            (
                f"4 retention ({retention['tasks']:,} tasks / {retention['jobs']} jobs)",
                f"run_retention {retention['retention_s']:.2f} s, +{retention['retention_rss_growth_mib']:.1f} MiB; "
                f"listing {retention['listing_s']:.2f} s, +{retention['listing_rss_growth_mib']:.1f} MiB",
                f"{retention['ratio']:.2f}x",
                f"≤ 1.2x ({_ok(retention['ratio'] <= TARGETS['retention_ratio'])}), "
                f"≤ 50 MiB ({_ok(retention['retention_rss_growth_mib'] <= TARGETS['retention_rss_mib'])})",
            )
        )
    return table


def summary_table(results: dict[str, Any]) -> str:
    lines = ["| Benchmark | Measured | Ratio | Target |", "|---|---|---|---|"]
    lines += [f"| {name} | {measured} | {ratio} | {target} |" for name, measured, ratio, target in rows(results)]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    packages = ", ".join(f"{name} {version}" for name, version in env["packages"].items())
    lines = [
        "# Benchmark results",
        "",
        f"Run {env['date']} at commit `{env['commit']}`; Python {env['python']} on {env['platform']} "
        f"({env['cpus']} CPUs); {packages}. `make bench` took {results['elapsed_s']:.0f} s.",
        "Every figure is the median of several runs; every ratio is taken within one run, then the median.",
        "",
        summary_table(results),
    ]
    cold = results.get("cold_start")
    if cold:
        lines += [
            "",
            "Cold start, `-X importtime` self time (top entries):",
            "",
            "| Own module | ms | Dependency | ms |",
        ]
        lines.append("|---|---|---|---|")
        own, deps = cold["importtime"]["top_own"], cold["importtime"]["top_deps"]
        for index in range(max(len(own), len(deps))):
            left = (own[index]["module"], f"{own[index]['self_ms']:.1f}") if index < len(own) else ("", "")
            right = (deps[index]["module"], f"{deps[index]['self_ms']:.1f}") if index < len(deps) else ("", "")
            lines.append(f"| {left[0]} | {left[1]} | {right[0]} | {right[1]} |")
    return "\n".join(lines) + "\n"


# Documents that show the summary table between these markers; make bench keeps them current.
DOCUMENTS: Final = (BENCH.parent / "README.md", BENCH.parent / "docs" / "benchmarks.md")
_MARKERS: Final = re.compile(r"(<!-- bench-results:start -->\n).*?(\n<!-- bench-results:end -->)", re.DOTALL)


def write(results: dict[str, Any], folder: Path = BENCH, documents: tuple[Path, ...] = ()) -> None:
    """Write bench/results.{json,md} into ``folder``, and the summary table into ``documents``."""
    (folder / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (folder / "results.md").write_text(markdown(results))
    table = summary_table(results)
    for document in documents:
        text = document.read_text()
        document.write_text(_MARKERS.sub(lambda match: match.group(1) + table + match.group(2), text))


def print_table(results: dict[str, Any]) -> None:
    table = rows(results)
    width = max((len(row[0]) for row in table), default=10)
    for name, measured, ratio, target in table:
        print(f"{name:<{width}}  {ratio:<28}  {target}", file=sys.stdout)
        print(f"{'':<{width}}  {measured}")
