"""Benchmark 4: a retention cleanup run over 100 000 completed tasks in 100 jobs.

The Batch emulator (with the identity endpoint) runs in its own process, seeded over its admin API
(the bulk ``seed_tasks``). Each measurement is a fresh ``python -m bench.retention_scale`` process, so
runs cannot share memory or caches; it builds its client, takes a token and opens a connection, resets
the kernel's peak-RSS mark (``/proc/self/clear_refs``; ``ru_maxrss`` where that is unavailable), times
the work, and reports the elapsed time and the peak-RSS growth over the RSS at the start.

* ``retention`` - ``shared.retention.run_retention`` with dry-run off, the product's ``BatchClient``
  built by ``shared.runtime.Runtime`` and an in-memory bus of the project's ``Producer`` interface
  (``CountingBus``: counts and sizes the enqueued command messages, then drops them - the real gateway
  would hand each chunk to the Service Bus SDK and keep nothing either);
* ``listing``   - a bare ``requests`` loop over the same listings (jobs, then each job's tasks, with the
  same ``$filter``/``$select``/``maxresults``), following ``odata.nextLink``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import requests

from bench.emulator_process import RemoteEmulator
from bench.report import put_median

ROOT: Final = Path(__file__).resolve().parents[1]
API_VERSION: Final = "2025-06-01"
RETENTION_DAYS: Final = 7
AGE_DAYS: Final = 30  # how old the seeded completions are


class CountingBus:
    """The retention ``Producer`` in memory: counts what would be sent, keeps nothing."""

    def __init__(self) -> None:
        self.enqueued = 0
        self.body_bytes = 0
        self.summaries = 0

    def enqueue(self, messages: Iterable[Any]) -> int:
        sent = 0
        for message in messages:
            self.body_bytes += len(message.body)
            sent += 1
        self.enqueued += sent
        return sent

    def publish(self, message: Any) -> None:
        self.summaries += 1


def seed(emulator: RemoteEmulator, jobs: int, tasks_per_job: int) -> None:
    finished = (datetime.now(UTC) - timedelta(days=AGE_DAYS)).isoformat()
    for job in range(jobs):
        job_id = f"ret-{job:03d}"
        emulator.seed_job(job_id)
        specs = [
            {"id": f"task-{task:05d}", "state": "completed", "exitCode": 0, "stateTransitionTime": finished}
            for task in range(tasks_per_job)
        ]
        emulator.seed_tasks(job_id, specs)


def _environment(batch_url: str) -> dict[str, str]:
    from bench.client_cost import product_environment  # noqa: PLC0415 - keeps the child's imports lean

    return {
        **product_environment(batch_url),
        "RETENTION_DAYS": str(RETENTION_DAYS),
        "RETENTION_MAX_COMMANDS": "1000000",
        "RETENTION_DRY_RUN": "false",
    }


class PeakRss:
    """Peak-RSS growth of this process over a stretch of work, in MiB.

    On Linux the kernel's peak (VmHWM) is reset to the current RSS first (``/proc/self/clear_refs``), so
    the peak of the imports and set-up before the clock cannot hide growth; elsewhere ``ru_maxrss``.
    """

    def __init__(self) -> None:
        self._reset = _reset_peak()
        self._before = _status_kib("VmRSS") if self._reset else _maxrss_kib()

    def growth_mib(self) -> float:
        after = _status_kib("VmHWM") if self._reset else _maxrss_kib()
        return max(0, after - self._before) / 1024


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def _maxrss_kib() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def measure_retention(batch_url: str) -> dict[str, Any]:
    from shared.retention import run_retention  # noqa: PLC0415
    from shared.runtime import Runtime  # noqa: PLC0415

    runtime = Runtime(_environment(batch_url))
    settings, batch, bus = runtime.settings.get(), runtime.batch.get(), CountingBus()
    # Token and connection before the clock starts (the listing baseline gets the same).
    list(batch.list_values("local", "/jobs", {"api-version": API_VERSION, "maxresults": "1"}))
    peak = PeakRss()
    started = time.perf_counter()
    summary = run_retention(batch, bus, settings, datetime.now(UTC))
    elapsed = time.perf_counter() - started
    return {
        "elapsed_s": elapsed,
        "rss_growth_mib": peak.growth_mib(),
        "tasks": summary.tasks_seen,
        "enqueued": bus.enqueued,
        "jobs": summary.jobs_scanned,
    }


def measure_listing(batch_url: str) -> dict[str, Any]:
    from azure.identity import ManagedIdentityCredential  # noqa: PLC0415

    from shared.batch_client import BATCH_SCOPE  # noqa: PLC0415
    from shared.retention import cutoff_time, task_filter  # noqa: PLC0415
    from shared.runtime import Runtime  # noqa: PLC0415

    settings = Runtime(_environment(batch_url)).settings.get()
    token = ManagedIdentityCredential(client_id=settings.client_id).get_token(BATCH_SCOPE).token
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    session.get(f"{batch_url}/jobs", params={"api-version": API_VERSION, "maxresults": "1"}, timeout=30).json()
    task_params = {
        "api-version": API_VERSION,
        "$filter": task_filter(settings.retention, cutoff_time(datetime.now(UTC), settings.retention.days)),
        "$select": "id,state,stateTransitionTime",
        "maxresults": "1000",
    }
    peak = PeakRss()
    started = time.perf_counter()
    job_params = {"api-version": API_VERSION, "$select": "id,state", "maxresults": "1000"}
    job_ids = [job["id"] for job in _pages(session, f"{batch_url}/jobs", job_params)]
    tasks = sum(1 for job_id in job_ids for _ in _pages(session, f"{batch_url}/jobs/{job_id}/tasks", task_params))
    elapsed = time.perf_counter() - started
    return {
        "elapsed_s": elapsed,
        "rss_growth_mib": peak.growth_mib(),
        "tasks": tasks,
        "jobs": len(job_ids),
    }


def _pages(session: requests.Session, url: str, params: dict[str, str]) -> Iterable[dict[str, Any]]:
    next_url: str | None = url
    query: dict[str, str] | None = params
    while next_url is not None:
        response = session.get(next_url, params=query, timeout=60)
        response.raise_for_status()
        page = response.json()
        yield from page.get("value", ())
        next_url, query = page.get("odata.nextLink"), None


def _measure_in_subprocess(kind: str, emulator: RemoteEmulator) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IDENTITY_ENDPOINT": emulator.identity_url}
    env["IDENTITY_HEADER"] = emulator.identity_secret
    result = subprocess.run(
        [sys.executable, "-m", "bench.retention_scale", kind, emulator.batch_url],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode:
        last = result.stderr.strip().splitlines()[-1:] or [f"exit status {result.returncode}"]
        raise RuntimeError(f"the {kind} measurement failed: {last[0]}")
    measured: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return measured


def run(jobs: int = 100, tasks_per_job: int = 1000, runs: int = 3) -> dict[str, Any]:
    with RemoteEmulator() as emulator:
        started = time.perf_counter()
        seed(emulator, jobs, tasks_per_job)
        seed_seconds = time.perf_counter() - started
        retention: list[dict[str, Any]] = []
        listing: list[dict[str, Any]] = []
        for number in range(runs):
            # Alternate which goes first, so drift on a shared machine hits both alike.
            if number % 2:
                retention.append(_measure_in_subprocess("retention", emulator))
                listing.append(_measure_in_subprocess("listing", emulator))
            else:
                listing.append(_measure_in_subprocess("listing", emulator))
                retention.append(_measure_in_subprocess("retention", emulator))
    total = jobs * tasks_per_job
    for measured in retention:
        if measured["enqueued"] != total:
            raise RuntimeError(f"retention enqueued {measured['enqueued']} of {total} deletes")
    result: dict[str, Any] = {
        "jobs": jobs,
        "tasks": total,
        "runs": runs,
        "seed_s": seed_seconds,
        "bus": "in-memory CountingBus (the project's retention Producer interface)",
    }
    put_median(result, "retention_s", [r["elapsed_s"] for r in retention])
    put_median(result, "listing_s", [b["elapsed_s"] for b in listing])
    put_median(result, "ratio", [r["elapsed_s"] / b["elapsed_s"] for r, b in zip(retention, listing, strict=True)])
    put_median(result, "retention_rss_growth_mib", [r["rss_growth_mib"] for r in retention])
    put_median(result, "listing_rss_growth_mib", [b["rss_growth_mib"] for b in listing])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retention_scale")
    parser.add_argument("kind", choices=["retention", "listing"])
    parser.add_argument("batch_url")
    args = parser.parse_args(argv)
    measure = measure_retention if args.kind == "retention" else measure_listing
    print(json.dumps(measure(args.batch_url)))


if __name__ == "__main__":
    main()
