"""Capacity of the Batch emulator: simple requests per second over keep-alive connections.

    python -m bench.emulator_capacity [--seconds 5] [--connections 8] [--processes 2] [--json out.json]

Starts the identity endpoint and the Batch emulator as their own processes (as `make run` would),
wired the default way (the emulator fetches the identity endpoint's JWKS), takes one real token, then
drives Get Task from several client processes, each holding keep-alive connections. Also times the
retention-shaped workload: bulk seeding 100 000 tasks over 100 jobs and a filtered scan of all of them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests

from emulators.batch import BatchEmulator

REPO_ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret"  # noqa: S105 - the loopback identity endpoint's header value
TASK_PATH = "/jobs/bench-job/tasks/bench-task?api-version=2025-06-01"


@dataclass
class WorkerResult:
    requests: int
    errors: int
    latencies_ms: list[float]


@contextmanager
def server(module: str, *args: str) -> Iterator[str]:
    """Run `python -m module --port 0 ...` and yield the URL from its ready line."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "IDENTITY_HEADER": SECRET},
    )
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline() if process.stdout else ""))
    reader.start()
    reader.join(timeout=30)
    try:
        match = re.search(r"http://[\d.]+:\d+", line[0] if line else "")
        if match is None:
            raise RuntimeError(f"{module} did not start: {line}")
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def _connection_loop(host: str, port: int, token: str, deadline: float, out: list[WorkerResult]) -> None:
    connection = http.client.HTTPConnection(host, port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"}
    result = WorkerResult(0, 0, [])
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        connection.request("GET", TASK_PATH, headers=headers)
        response = connection.getresponse()
        response.read()
        result.latencies_ms.append((time.perf_counter() - started) * 1000)
        result.requests += 1
        result.errors += response.status != 200
    connection.close()
    out.append(result)


def _client_process(url: str, token: str, connections: int, seconds: float) -> list[WorkerResult]:
    parts = urlsplit(url)
    deadline = time.perf_counter() + seconds
    results: list[WorkerResult] = []
    threads = [
        threading.Thread(
            target=_connection_loop, args=(parts.hostname or "", parts.port or 80, token, deadline, results)
        )
        for _ in range(connections)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 30)
    return results


def measure_throughput(
    batch_url: str, token: str, seconds: float, connections: int, processes: int
) -> dict[str, float]:
    per_process = max(1, connections // processes)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        batches = pool.starmap(_client_process, [(batch_url, token, per_process, seconds)] * processes)
    results = [result for batch in batches for result in batch]
    latencies = sorted(latency for result in results for latency in result.latencies_ms)
    total = sum(result.requests for result in results)
    return {
        "requests": total,
        "errors": sum(result.errors for result in results),
        "seconds": seconds,
        # Every client process measures for exactly `seconds` once it has started.
        "requests_per_second": round(total / seconds),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1], 2),
        "connections": per_process * processes,
        "client_processes": processes,
    }


def measure_retention_workload(jobs: int = 100, tasks_per_job: int = 1000) -> dict[str, float]:
    """Seed old and new completed tasks in-process, then list the old ones of every job over HTTP."""
    cutoff = datetime.now(UTC) - timedelta(days=7)
    with BatchEmulator(port=0, accept_any_token=True, jwks_url=None) as emulator:
        started = time.perf_counter()
        for job_index in range(jobs):
            emulator.seed_job(f"job{job_index}")
            specs = (
                {
                    "id": f"task{i:05}",
                    "state": "completed",
                    "state_transition_time": cutoff - timedelta(hours=1 if i % 2 else -1),
                }
                for i in range(tasks_per_job)
            )
            emulator.seed_tasks(f"job{job_index}", specs)
        seeded = time.perf_counter() - started
        when = cutoff.strftime("%Y-%m-%dT%H:%M:%SZ")
        expression = quote(f"state eq 'completed' and stateTransitionTime lt datetime'{when}'")
        found = 0
        started = time.perf_counter()
        with requests.Session() as session:
            for job_index in range(jobs):
                link: str | None = (
                    f"{emulator.url}/jobs/job{job_index}/tasks?api-version=2025-06-01"
                    f"&$filter={expression}&$select=id,stateTransitionTime"
                )
                while link:
                    page = session.get(link, timeout=30).json()
                    found += len(page["value"])
                    link = page.get("odata.nextLink")
        scanned = time.perf_counter() - started
    return {
        "tasks_seeded": jobs * tasks_per_job,
        "seed_seconds": round(seeded, 2),
        "old_tasks_found": found,
        "filtered_scan_seconds": round(scanned, 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_capacity", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections in total")
    parser.add_argument("--processes", type=int, default=2, help="client processes sharing the connections")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    with server("emulators.identity") as identity_url, server("emulators.batch", "--identity-url", identity_url) as url:
        token = requests.get(
            f"{identity_url}/msi/token",
            params={"api-version": "2019-08-01", "resource": "https://batch.core.windows.net/"},
            headers={"X-IDENTITY-HEADER": SECRET},
            timeout=10,
        ).json()["access_token"]
        requests.post(f"{url}/_emulator/jobs", json={"id": "bench-job"}, timeout=10).raise_for_status()
        requests.post(f"{url}/_emulator/jobs/bench-job/tasks", json={"id": "bench-task"}, timeout=10).raise_for_status()
        throughput = measure_throughput(url, token, args.seconds, args.connections, args.processes)
    results = {"get_task": throughput, "retention": measure_retention_workload()}
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if throughput["errors"]:
        raise SystemExit(f"{throughput['errors']} requests failed")


if __name__ == "__main__":
    main()
