"""Results: the targets, the printed table, bench/results.{json,md}, and docs/benchmarks.md's results section.

    python -m bench.report --docs    # (make bench-docs) refresh docs/benchmarks.md from bench/results.json

Every figure is the median over a benchmark's runs, with ``<name>_range`` = [min, max] beside it; every
ratio is taken within one run (the compared runs alternate), then the median of the per-run ratios.
``TARGETS`` is the one list of what ``make bench`` requires; ``verdicts`` checks the medians against it.
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Final

BENCH: Final = Path(__file__).resolve().parent
DOCS: Final = BENCH.parent / "docs" / "benchmarks.md"
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


@dataclass(frozen=True)
class Target:
    """``results[benchmark]...[figure] <op> limit``; for client cost, checked for every action."""

    benchmark: str
    figure: str
    op: str  # ">=", "<=" or "is"
    limit: float | bool
    what: str

    def met(self, value: float | bool) -> bool:
        compare: Callable[[Any, Any], bool] = {">=": operator.ge, "<=": operator.le, "is": operator.is_}[self.op]
        return compare(value, self.limit)

    def describe(self) -> str:
        if self.op == "is":
            return self.what
        return f"{self.what} {'≥' if self.op == '>=' else '≤'} {self.limit:g}"


# Every target of `make bench`, in one place; a missed one makes `python -m bench` exit with status 1.
TARGETS: Final = (
    Target("client_cost", "throughput_vs_sdk", ">=", 1.3, "client throughput vs azure-batch SDK"),
    Target("client_cost", "throughput_vs_requests", ">=", 0.9, "client throughput vs bare requests"),
    Target("cold_start", "ratio", "<=", 1.1, "import function_app vs its dependencies"),
    Target("cold_start", "network_at_import", "is", False, "no network at import"),
    Target("fan_out", "ratio", "<=", 1.3, "selector expansion vs bare listing + batched sends"),
    Target("fan_out", "expansion_rss_growth_mib", "<=", 50.0, "expansion peak RSS growth, larger size (MiB)"),
    Target("fan_out", "small_expansion_rss_growth_mib", "<=", 50.0, "expansion peak RSS growth, smaller size (MiB)"),
    Target("instance_throughput", "ratio_to_bound", ">=", 0.8, "instance throughput vs ideal bound"),
)


@dataclass(frozen=True)
class Verdict:
    target: Target
    subject: str  # the benchmark, or "client_cost terminateTask"
    value: float | bool | None  # None: the benchmark failed
    met: bool

    def describe(self) -> str:
        if self.value is None:
            return f"{self.subject}: {self.target.describe()}, not measured (the benchmark failed)"
        return f"{self.subject}: {self.target.describe()}, measured {self.value:.3f}"


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    """Each target checked against the medians of the benchmarks present in ``results``."""
    found: list[Verdict] = []
    for target in TARGETS:
        figures = results.get(target.benchmark)
        if not figures:
            continue
        if "error" in figures:
            found.append(Verdict(target, target.benchmark, None, met=False))
            continue
        if target.benchmark == "client_cost":
            subjects = [(f"client_cost {action}", values) for action, values in figures["actions"].items()]
        else:
            subjects = [(target.benchmark, figures)]
        for subject, values in subjects:
            value = values[target.figure]
            found.append(Verdict(target, subject, value, target.met(value)))
    return found


def missed(results: dict[str, Any]) -> list[Verdict]:
    return [verdict for verdict in verdicts(results) if not verdict.met]


# --- figures --------------------------------------------------------------------------------------


def put_median(figures: dict[str, Any], name: str, values: Sequence[float]) -> None:
    """``figures[name]`` = the median of ``values``, ``figures[name + "_range"]`` = [min, max]."""
    figures[name] = statistics.median(values)
    figures[f"{name}_range"] = [min(values), max(values)]


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
        "load_average_start": _load(),
        "packages": versions,
    }


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def finish(results: dict[str, Any], elapsed: float) -> None:
    results["elapsed_s"] = elapsed
    results["environment"]["load_average_end"] = _load()


# --- text -----------------------------------------------------------------------------------------


def _range(figures: dict[str, Any], name: str, fmt: str = ".2f", unit: str = "") -> str:
    """``1.43 (1.40-1.47)``: the median and, when known, its range over the runs."""
    value = f"{figures[name]:{fmt}}{unit}"
    spread = figures.get(f"{name}_range")
    if not spread:
        return value
    return f"{value} ({spread[0]:{fmt}}-{spread[1]:{fmt}})"


def _ok(met: bool) -> str:
    return "met" if met else "MISSED"


def _targets_text(results: dict[str, Any], benchmark: str, subject: str | None = None) -> str:
    found = [v for v in verdicts(results) if v.target.benchmark == benchmark and subject in (None, v.subject)]
    return ", ".join(f"{v.target.describe()} ({_ok(v.met)})" for v in found) or "report only"


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(benchmark, measured, ratio, target) rows of the summary table."""
    table: list[tuple[str, str, str, str]] = [
        (f"{name} (failed)", figures["error"][:200], "n/a", "MISSED: the benchmark failed")
        for name, figures in results.items()
        if isinstance(figures, dict) and "error" in figures
    ]
    failed = {row[0].removesuffix(" (failed)") for row in table}
    client = None if "client_cost" in failed else results.get("client_cost")
    if client:
        for action, figures in client["actions"].items():
            product, sdk, bare = figures["product"], figures["sdk"], figures["requests"]
            table.append(
                (
                    f"1 client cost: {action}",
                    f"product {product['per_second']:.0f}/s {product['cpu_us_per_command']:.0f} µs CPU; "
                    f"sdk {sdk['per_second']:.0f}/s {sdk['cpu_us_per_command']:.0f} µs; "
                    f"requests {bare['per_second']:.0f}/s {bare['cpu_us_per_command']:.0f} µs",
                    f"{_range(figures, 'throughput_vs_sdk', unit='x')} sdk, "
                    f"{_range(figures, 'throughput_vs_requests', unit='x')} requests",
                    _targets_text(results, "client_cost", f"client_cost {action}"),
                )
            )
    cold = None if "cold_start" in failed else results.get("cold_start")
    if cold:
        table.append(
            (
                "2 cold start",
                f"function_app {_range(cold, 'function_app_ms', '.0f')} ms; "
                f"dependencies {_range(cold, 'dependencies_ms', '.0f')} ms; "
                f"own modules {cold['importtime']['own_self_ms']:.1f} ms self; "
                f"network at import: {'yes' if cold['network_at_import'] else 'no'}",
                _range(cold, "ratio", unit="x"),
                _targets_text(results, "cold_start"),
            )
        )
    e2e = None if "end_to_end" in failed else results.get("end_to_end")
    if e2e:
        table.append(
            (
                "3 end to end (16 concurrent, in one process)",
                f"system {_range(e2e, 'system_per_second', '.0f')} cmd/s; "
                f"peer {e2e['peer_round_trips_per_second']:.0f} round trips/s "
                f"(= {e2e['peer_capacity_commands_per_second']:.0f} cmd/s at 2 per command); "
                f"emulator {e2e['emulator_calls_per_second']:.0f} calls/s",
                f"{_range(e2e, 'ratio_vs_bound', unit='x')} of {e2e['bound_by']}",
                f"report only (bound by {e2e['bound_by']})",
            )
        )
    binding = None if "binding_path" in failed else results.get("binding_path")
    if binding:
        table.append(
            (
                "3b binding path per message",
                f"build binding data {binding['encode_us']:.0f} µs; decode (package) "
                f"{binding['decode_package_us']:.0f} µs; settle over gRPC {binding['settle_grpc_ms']:.2f} ms "
                f"vs {binding['settle_direct_ms']:.2f} ms on the receiver",
                f"+{binding['extra_per_message_ms']:.2f} ms per message",
                "report only (the cost the end-to-end figures include)",
            )
        )
    fan = None if "fan_out" in failed else results.get("fan_out")
    if fan:
        table.append(
            (
                f"4 fan-out ({fan['tasks']:,} tasks / {fan['jobs']} jobs; "
                f"{fan['small_tasks']:,} / {fan['small_jobs']})",
                f"expansion {_range(fan, 'expansion_s')} s = listing {fan['expansion_listing_s']:.2f} + "
                f"Get Task Counts {fan['expansion_counts_s']:.2f} + own work {fan['expansion_own_s']:.2f}, "
                f"{fan['expansion_cpu_s']:.2f} s CPU, peak RSS +{fan['expansion_rss_growth_mib']:.1f} MiB "
                f"(+{fan['small_expansion_rss_growth_mib']:.1f} MiB at {fan['small_tasks']:,}; the stand-in queue "
                f"held up to {fan['queue_peak_mib']:.1f} / {fan['small_queue_peak_mib']:.1f} MiB of it); "
                f"listing + sends {_range(fan, 'baseline_s')} s = listing {fan['baseline_listing_s']:.2f} + "
                f"own work {fan['baseline_own_s']:.2f}, {fan['baseline_cpu_s']:.2f} s CPU, "
                f"+{fan['baseline_rss_growth_mib']:.1f} MiB",
                f"{_range(fan, 'ratio', unit='x')} ({fan['small_ratio']:.2f}x at {fan['small_tasks']:,})",
                _targets_text(results, "fan_out"),
            )
        )
    instance = None if "instance_throughput" in failed else results.get("instance_throughput")
    if instance:
        latency = instance["latency_ms"]
        delays = instance["delay_ms_each_way"]
        table.append(
            (
                f"5 instance throughput ({instance['concurrency']} concurrent; "
                f"+{delays['servicebus']:g} ms Service Bus, +{delays['batch']:g} ms Batch each way)",
                f"{_range(instance, 'commands_per_second', '.0f')} cmd/s of bound "
                f"{_range(instance, 'bound_commands_per_second', '.0f')}/s; per-command latency "
                f"{latency['per_command']:.1f} ms = receive {latency['receive']:.1f} + Batch call "
                f"{latency['batch_call']:.1f} + publish {latency['publish']:.1f} + settle {latency['settle']:.1f}; "
                f"worker CPU {_range(instance, 'cpu_ms_per_command')} ms/cmd "
                f"(host stand-in's receive + settle {_optional_range(instance, 'host_standin_cpu_ms_per_command')})",
                f"{_range(instance, 'ratio_to_bound', unit='x')} of bound",
                _targets_text(results, "instance_throughput"),
            )
        )
    return table


def summary_table(results: dict[str, Any]) -> str:
    lines = ["| Benchmark | Measured (median, range over runs) | Ratio | Target |", "|---|---|---|---|"]
    lines += [f"| {name} | {measured} | {ratio} | {target} |" for name, measured, ratio, target in rows(results)]
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def instance_tables(instance: dict[str, Any]) -> list[str]:
    """The concurrency table and the latency breakdown of benchmark 5, as Markdown lines."""
    lines = [
        "| Concurrency | Commands/s | Ideal bound (c / L) | Ratio | Worker CPU ms/cmd | Stand-ins CPU ms/cmd |",
        "|---|---|---|---|---|---|",
    ]
    for row in instance["concurrency_table"]:
        lines.append(
            f"| {row['concurrency']} | {_range(row, 'commands_per_second', '.0f')} | "
            f"{row['bound_commands_per_second']:.0f} | {_range(row, 'ratio_to_bound')} | "
            f"{_ms(row['cpu_ms_per_command'])} | {_ms(row['standins_cpu_ms_per_command'])} |"
        )
    local = instance.get("local_queue_driver")
    if local and "error" in local:
        lines.append(
            f"| {instance['concurrency']} via `local.queue_driver.QueueDriver` | failed: {local['error'][:120]} |"
        )
    elif local:
        lines.append(
            f"| {local['concurrency']} via `local.queue_driver.QueueDriver` | {local['commands_per_second']:.0f} | "
            f"{local['bound_commands_per_second']:.0f} | {local['ratio_to_bound']:.2f} | "
            f"{_ms(local['cpu_ms_per_command'])} | {_ms(local['standins_cpu_ms_per_command'])} |"
        )
    probe, loaded = instance["latency_ms"], instance["loaded_latency_ms"]
    lines += [
        "",
        f"Per-command latency at concurrency {instance['concurrency']}, ms: each operation alone (median of "
        f"{instance['probe_samples']} per repetition) against the mean the worker waited under load (same runs):",
        "",
        "| | receive | Batch call | publish | settle | invocation's own work | per command |",
        "|---|---|---|---|---|---|---|",
        f"| alone (the bound's L) | {_range(probe, 'receive', '.1f')} | {_range(probe, 'batch_call', '.1f')} | "
        f"{_range(probe, 'publish', '.1f')} | {_range(probe, 'settle', '.1f')} | n/a | "
        f"{_range(probe, 'per_command', '.1f')} |",
        f"| under load | {_range(loaded, 'receive', '.1f')} | {_range(loaded, 'batch_call', '.1f')} | "
        f"{_range(loaded, 'publish', '.1f')} | {_range(loaded, 'settle', '.1f')} | "
        f"{_range(loaded, 'invocation_other', '.1f')} | {_range(loaded, 'per_command', '.1f')} |",
        "",
        *_driver_thread_lines(instance.get("local_queue_driver")),
        *_repetition_lines(instance),
        f"Waiting for a CPU while runnable (schedstat) per command: worker "
        f"{_optional_range(instance, 'cpu_wait_ms_per_command')} ms, stand-ins "
        f"{_optional_range(instance, 'standins_cpu_wait_ms_per_command')} ms; stand-ins CPU "
        f"{_optional_range(instance, 'standins_cpu_ms_per_command')} ms per command.",
    ]
    return lines


def _repetition_lines(instance: dict[str, Any]) -> list[str]:
    """Each repetition's ratio beside the time the worker waited for a CPU: the machine's share of the gap."""
    pairs = [
        f"{r['ratio_to_bound']:.2f} at {_ms(r.get('cpu_wait_ms_per_command'))} ms"
        for r in instance.get("repetitions", [])
    ]
    if not pairs:
        return []
    return [f"Per repetition, ratio at the worker's CPU wait per command: {'; '.join(pairs)}.", ""]


def _driver_thread_lines(local: dict[str, Any] | None) -> list[str]:
    thread = (local or {}).get("driver_thread")
    if not thread:
        return []
    return [
        f"The local queue driver's one thread spent {thread['settle_share_of_wall']:.0%} of the run settling, "
        f"one message at a time ({thread['settlements']} settlements, median "
        f"{thread['settle_ms_median']:.1f} ms), and {thread['receive_share_of_wall']:.0%} in receives "
        f"({thread['receives']} receives, {thread['messages_per_receive']:.1f} messages each, median "
        f"{thread['receive_ms_median']:.1f} ms).",
        "",
    ]


def _optional_range(figures: dict[str, Any], name: str) -> str:
    return "n/a" if figures.get(name) is None else _range(figures, name, ".1f")


def _heading(results: dict[str, Any]) -> list[str]:
    env = results["environment"]
    packages = ", ".join(f"{name} {version}" for name, version in env["packages"].items())
    load = f"load average {env.get('load_average_start')} at the start, {env.get('load_average_end')} at the end"
    return [
        f"Run {env['date']} at commit `{env['commit']}`; Python {env['python']} on {env['platform']} "
        f"({env['cpus']} CPUs, {load}); {packages}. `make bench` took {results['elapsed_s']:.0f} s.",
        "Every figure is the median of several runs with its range (min-max) over the runs; every ratio is "
        "taken within one run, whose compared measurements alternate, then the median.",
    ]


def _verdict_lines(results: dict[str, Any]) -> list[str]:
    failed = missed(results)
    if not failed:
        return ["All targets met."]
    return ["Targets missed:", ""] + [f"- {verdict.describe()}" for verdict in failed]


def results_section(results: dict[str, Any]) -> str:
    """What bench/results.md holds and docs/benchmarks.md shows between its markers."""
    lines = [*_heading(results), "", summary_table(results), "", *_verdict_lines(results)]
    instance = results.get("instance_throughput")
    if instance and "error" not in instance:
        lines += ["", "Instance throughput by concurrency (benchmark 5):", "", *instance_tables(instance)]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    lines = ["# Benchmark results", "", results_section(results)]
    cold = results.get("cold_start")
    if cold and "error" not in cold:
        lines += ["", "Cold start, `-X importtime` self time (top entries):", ""]
        lines += ["| Own module | ms | Dependency | ms |", "|---|---|---|---|"]
        own, deps = cold["importtime"]["top_own"], cold["importtime"]["top_deps"]
        for index in range(max(len(own), len(deps))):
            left = (own[index]["module"], f"{own[index]['self_ms']:.1f}") if index < len(own) else ("", "")
            right = (deps[index]["module"], f"{deps[index]['self_ms']:.1f}") if index < len(deps) else ("", "")
            lines.append(f"| {left[0]} | {left[1]} | {right[0]} | {right[1]} |")
    return "\n".join(lines) + "\n"


def write(results: dict[str, Any], folder: Path = BENCH) -> None:
    """Write bench/results.json and bench/results.md into ``folder`` (no other file)."""
    (folder / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    (folder / "results.md").write_text(markdown(results))


_MARKERS: Final = re.compile(r"(<!-- bench-results:start -->)\n.*?(<!-- bench-results:end -->)", re.DOTALL)


def refresh_docs(results: dict[str, Any], document: Path = DOCS) -> None:
    """Replace the section between the bench-results markers of ``document`` with ``results_section``."""
    text = document.read_text()
    if not _MARKERS.search(text):
        raise ValueError(f"{document} lacks the <!-- bench-results:start/end --> markers")
    section = results_section(results)
    document.write_text(_MARKERS.sub(lambda match: f"{match.group(1)}\n{section}\n{match.group(2)}", text, count=1))


def print_table(results: dict[str, Any]) -> None:
    table = rows(results)
    width = max((len(row[0]) for row in table), default=10)
    for name, measured, ratio, target in table:
        print(f"{name:<{width}}  {ratio:<32}  {target}", file=sys.stdout)
        print(f"{'':<{width}}  {measured}")
    instance = results.get("instance_throughput")
    if instance and "error" not in instance:
        print()
        for line in instance_tables(instance):
            print(line)
    print()
    for line in _verdict_lines(results):
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--docs", action="store_true", help="refresh docs/benchmarks.md from bench/results.json")
    args = parser.parse_args(argv)
    results = json.loads((BENCH / "results.json").read_text())
    if args.docs:
        refresh_docs(results)
        print(f"refreshed {DOCS.relative_to(BENCH.parent)} from bench/results.json")
    else:
        print_table(results)


if __name__ == "__main__":
    main()
