"""Benchmark 4: the fan-out of one selector command over 100 000 completed tasks in 100 jobs.

The subject is the product's own expansion: the retention policy's selector command (``deleteTask`` with
``jobSelect`` {idPrefix} and ``select`` {state: completed, olderThan: P7D}, built from the ``RETENTION_*``
settings by ``shared.retention`` / ``shared.policies``) handed to ``shared.processor.Processor``, and then
every selector message that expansion enqueues (the next page of the job listing, one per-job selector per
job, each per-job selector's continuations), one after another in queue order, until the queue holds no
selector message. Each invocation lists one page against the Batch emulator (a child process, over HTTP
with real tokens) and enqueues the targets the previous page chose (``shared/fanout.py``). Timed: from the
first message handed to the processor to the last per-target command enqueued.

The baseline, measured in the same run: a bare ``requests`` loop over the same listings (the job page, then
each job's tasks with the same ``$filter``, ``$select`` and page size, following ``odata.nextLink``) that
sends, after each task page, that page's delete commands as one batch: the same messages (ids and bodies,
checked) built from a string template, to the same queue stand-in.

``StandInQueue`` is the queue for both: the processor's ``Bus``. Selector messages wait in a deque to be
processed (duplicate detection on their ids); per-target commands are counted, sized and folded into an
order-independent checksum of (message_id, body), then dropped, as the real gateway hands them to the
Service Bus SDK and keeps nothing. Outcome events are counted. The checksum of every measurement at a size
must be the same, so both sides provably sent the same messages.

Each measurement is a fresh ``python -m bench.fan_out`` process (no shared memory or caches): it builds its
clients, takes a token and opens a connection (the expansion also expands a small warm-up selector of the
same shape), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``; ``ru_maxrss`` where that is
unavailable), then does the timed work and reports its elapsed time, CPU and peak-RSS growth, and the wall
time of its Batch calls (listing; Get Task Counts), so each side splits into Batch calls and own work. Two
sizes run interleaved, 100 jobs and 25 jobs of the same 1 000 tasks, so the memory is seen against the task
count; within each, expansion and baseline alternate which goes first.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import requests

from bench.emulator_process import RemoteEmulator
from bench.report import put_median
from shared.messages import Outbound, Received

if TYPE_CHECKING:
    from shared.batch_client import BatchAnswer, BatchClient
    from shared.config import Settings
    from shared.contract import Command
    from shared.policies import FleetPolicy
    from shared.processor import Processor

ROOT: Final = Path(__file__).resolve().parents[1]
API_VERSION: Final = "2025-06-01"
ACCOUNT: Final = "local"
SCOPE: Final = "fo-"  # FLEET_SCOPE_PREFIXES; each size's jobs have a prefix of their own inside it
LARGE: Final = "fo-l-"
SMALL: Final = "fo-s-"
WARM_UP: Final = "fo-w-"
WARM_UP_JOBS: Final = 2
WARM_UP_TASKS: Final = 600  # two task pages per job, as at full size
RETENTION_DAYS: Final = 7
AGE_DAYS: Final = 30  # how old the seeded completions are: every task qualifies
COMMAND_ID: Final = "bench-fan-out"
SELECTOR_MARK: Final = b'"select":'  # in every selector body; never in a single-target command's
_CHECKSUM_MASK: Final = 2**64 - 1
KINDS: Final = ("expansion", "baseline")


class StandInQueue:
    """The command queue in memory, as the processor's ``Bus``: selector messages wait, commands are counted.

    A per-target command is counted, sized and folded into ``checksum`` (an order-independent sum of the
    CRC-32 of its message id and body), then dropped; ``last_enqueued`` is when the latest batch holding
    commands was accepted.
    """

    def __init__(self) -> None:
        self.waiting: deque[Outbound] = deque()
        self.seen: set[str] = set()  # selector message ids (duplicate detection)
        self.waiting_bytes = 0
        self.peak_waiting_bytes = 0  # the most selector-message body bytes waiting at once
        self.commands = 0
        self.batches = 0
        self.body_bytes = 0
        self.checksum = 0
        self.last_enqueued = 0.0
        self.outcomes = 0
        self.scheduled = 0
        self.invocations = 0

    def put(self, message: Outbound) -> None:
        if message.message_id not in self.seen:
            self.seen.add(message.message_id)
            self.waiting.append(message)
            self.waiting_bytes += len(message.body)
            self.peak_waiting_bytes = max(self.peak_waiting_bytes, self.waiting_bytes)

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        sent = commands = 0
        checksum, size = self.checksum, 0
        for message in messages:
            sent += 1
            if SELECTOR_MARK in message.body:
                self.put(message)
                continue
            commands += 1
            size += len(message.body)
            checksum += zlib.crc32(message.body, zlib.crc32(message.message_id.encode()))
        if commands:
            self.commands += commands
            self.batches += 1
            self.body_bytes += size
            self.checksum = checksum & _CHECKSUM_MASK
            self.last_enqueued = time.perf_counter()
        return sent

    def schedule(self, message: Outbound) -> None:
        """A retry copy of a page whose listing failed: delivered again (and reported: it should not happen)."""
        self.scheduled += 1
        self.put(message)

    def publish(self, message: Outbound) -> None:
        self.outcomes += 1

    def drain(self, processor: Processor) -> None:
        """Hand each waiting selector message to the processor, in queue order, until none is left."""
        while self.waiting:
            message = self.waiting.popleft()
            self.waiting_bytes -= len(message.body)
            properties = {name: str(value) for name, value in message.application_properties.items()}
            result = processor.process(Received.read(message.body, message.message_id, properties))
            self.invocations += 1
            if result.settlement.kind != "complete":
                settlement = result.settlement
                raise RuntimeError(f"{message.message_id} was settled {settlement.kind}: {settlement.description}")

    def figures(self) -> dict[str, Any]:
        return {
            "commands": self.commands,
            "batches": self.batches,
            "body_bytes": self.body_bytes,
            "checksum": self.checksum,
            "outcomes": self.outcomes,
            "scheduled": self.scheduled,
            "invocations": self.invocations,
            "queue_peak_mib": self.peak_waiting_bytes / 2**20,
        }


def seed(emulator: RemoteEmulator, prefix: str, jobs: int, tasks_per_job: int) -> None:
    finished = (datetime.now(UTC) - timedelta(days=AGE_DAYS)).isoformat()
    for job in range(jobs):
        job_id = f"{prefix}{job:03d}"
        emulator.seed_job(job_id)
        specs = [
            {"id": f"task-{task:05d}", "state": "completed", "exitCode": 0, "stateTransitionTime": finished}
            for task in range(tasks_per_job)
        ]
        emulator.seed_tasks(job_id, specs)


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


# --- the measurements (each in a child process) -------------------------------------------------------


class TimedBatch:
    """The processor's Batch client, with the wall time of its listing and Get Task Counts calls summed.

    A thin delegate (two ``perf_counter`` calls per Batch call), so the results can say how much of the
    expansion is Batch calls and how much the product's own work. Get Task Counts calls overlap, so for
    them it sums the time at least one is in flight.
    """

    def __init__(self, client: BatchClient) -> None:
        self._client = client
        self.listing_s = 0.0
        self.counts_s = 0.0
        self.listings = 0
        self.counts = 0
        self._lock = threading.Lock()
        self._in_flight = 0
        self._since = 0.0

    def execute(self, command: Command) -> BatchAnswer:
        return self._client.execute(command)

    def get_job(self, account: str, job_id: str, command: Command | None = None) -> BatchAnswer:
        return self._client.get_job(account, job_id, command)

    def get_task(self, account: str, job_id: str, task_id: str, command: Command | None = None) -> BatchAnswer:
        return self._client.get_task(account, job_id, task_id, command)

    def list_page(
        self, account: str, path: str, params: Mapping[str, str], next_link: str | None = None, key: str | None = None
    ) -> BatchAnswer:
        started = time.perf_counter()
        try:
            return self._client.list_page(account, path, params, next_link, key)
        finally:
            self.listing_s += time.perf_counter() - started
            self.listings += 1

    def get_task_counts(self, account: str, job_id: str, key: str | None = None) -> BatchAnswer:
        # The calls of a wave overlap (shared/fanout.py COUNTS_IN_FLIGHT): the time any is in flight counts once.
        with self._lock:
            if self._in_flight == 0:
                self._since = time.perf_counter()
            self._in_flight += 1
        try:
            return self._client.get_task_counts(account, job_id, key)
        finally:
            with self._lock:
                self._in_flight -= 1
                self.counts += 1
                if self._in_flight == 0:
                    self.counts_s += time.perf_counter() - self._since


def _environment(batch_url: str, prefix: str) -> dict[str, str]:
    """App settings pointing the product at the emulator (as ``bench.client_cost.product_environment``,
    without importing the SDK that module compares against), with the retention shorthand over ``prefix``."""
    return {
        "BATCH_ACCOUNTS": json.dumps({ACCOUNT: batch_url}),
        "BATCH_ALLOW_HTTP_LOOPBACK": "true",
        "ServiceBusConnection": "Endpoint=sb://127.0.0.1:1;SharedAccessKeyName=k;SharedAccessKey=v",
        "AZURE_CLIENT_ID": "bench-identity",
        "BATCH_API_VERSION": API_VERSION,
        "FLEET_SCOPE_PREFIXES": SCOPE,
        "FLEET_MAX_LIMIT": "1000000",
        "RETENTION_DAYS": str(RETENTION_DAYS),
        "RETENTION_JOB_PREFIX": prefix,
        "RETENTION_MAX_COMMANDS": "1000000",
        "RETENTION_DRY_RUN": "false",
    }


def _retention_policy(settings: Settings) -> FleetPolicy:
    from shared.policies import by_name  # noqa: PLC0415 - the children only
    from shared.retention import policy_name  # noqa: PLC0415

    return by_name(settings)[policy_name(ACCOUNT)]


def measure_expansion(batch_url: str, prefix: str) -> dict[str, Any]:
    from shared.policies import FleetPolicy  # noqa: PLC0415
    from shared.processor import Processor  # noqa: PLC0415
    from shared.runtime import Runtime  # noqa: PLC0415

    runtime = Runtime(_environment(batch_url, prefix))
    settings, batch = runtime.settings.get(), runtime.batch.get()
    policy = _retention_policy(settings)
    # Off the clock: the token, the connection and every first-call cost, by expanding the same policy over
    # the warm-up jobs.
    warm_fields = {**policy.fields, "jobSelect": {**policy.fields["jobSelect"], "idPrefix": WARM_UP}}
    warm = StandInQueue()
    warm.put(FleetPolicy(policy.name, policy.source, warm_fields).message("bench-warm-up"))
    warm.drain(Processor(settings, batch, warm))
    if warm.commands != WARM_UP_JOBS * WARM_UP_TASKS:
        raise RuntimeError(f"the warm-up enqueued {warm.commands} of {WARM_UP_JOBS * WARM_UP_TASKS} commands")
    queue = StandInQueue()
    timed = TimedBatch(batch)
    processor = Processor(settings, timed, queue)
    queue.put(policy.message(COMMAND_ID))
    gc.collect()
    peak = PeakRss()
    cpu = time.process_time()
    started = time.perf_counter()
    queue.drain(processor)
    cpu = time.process_time() - cpu
    return {
        "elapsed_s": queue.last_enqueued - started,
        "cpu_s": cpu,
        "rss_growth_mib": peak.growth_mib(),
        "listing_s": timed.listing_s,
        "counts_s": timed.counts_s,
        "batch_calls": timed.listings + timed.counts,
        **queue.figures(),
    }


class BareListing:
    """A bare ``requests`` loop over a listing's pages, following ``odata.nextLink``; sums its wall time."""

    def __init__(self, session: requests.Session) -> None:
        self._session = session
        self.listing_s = 0.0
        self.calls = 0

    def pages(self, url: str, params: dict[str, str]) -> Iterator[list[dict[str, Any]]]:
        next_url: str | None = url
        query: dict[str, str] | None = params
        while next_url is not None:
            started = time.perf_counter()
            response = self._session.get(next_url, params=query, timeout=60)
            response.raise_for_status()
            page = response.json()
            self.listing_s += time.perf_counter() - started
            self.calls += 1
            yield page.get("value", [])
            next_url, query = page.get("odata.nextLink"), None


def measure_baseline(batch_url: str, prefix: str) -> dict[str, Any]:
    from azure.identity import ManagedIdentityCredential  # noqa: PLC0415

    from shared.batch_client import BATCH_SCOPE  # noqa: PLC0415
    from shared.contract import Command, Selection, child_id, parse_message  # noqa: PLC0415
    from shared.fanout import COUNTED_JOB_PAGE, TASK_PAGE  # noqa: PLC0415
    from shared.runtime import Runtime  # noqa: PLC0415
    from shared.selectors import JOB_SELECT, TASK_SELECT, TaskSelector  # noqa: PLC0415

    settings = Runtime(_environment(batch_url, prefix)).settings.get()
    message = _retention_policy(settings).message(COMMAND_ID)
    selection = parse_message(message.body, message.message_id, settings.accounts, ACCOUNT, settings.fleet)
    assert isinstance(selection, Selection) and selection.job_select is not None
    assert isinstance(selection.select, TaskSelector)
    # The same listings as the expansion: its filters, fields and page sizes (off the clock).
    as_of = datetime.now(UTC).replace(microsecond=0)
    job_params = {
        "api-version": API_VERSION,
        "$filter": selection.job_select.odata_filter(settings.fleet.scope, as_of) or "",
        "$select": JOB_SELECT,
        "maxresults": str(COUNTED_JOB_PAGE),
    }
    task_params = {
        "api-version": API_VERSION,
        "$filter": selection.select.odata_filter(as_of) or "",
        "$select": TASK_SELECT,
        "maxresults": str(TASK_PAGE),
    }
    action, requested_by = selection.action, selection.requested_by

    def command(job_id: str, task_id: str) -> Outbound:
        """The expansion's message for one task, from a template (checked against the product's below).

        A per-job selector's commandId is ``<commandId>/<jobId>`` and its targets' ``<that>/<jobId>/<taskId>``.
        """
        command_id = f"{COMMAND_ID}/{job_id}/{job_id}/{task_id}"
        body = (
            f'{{"action":"{action}","jobId":"{job_id}","account":"{ACCOUNT}","taskId":"{task_id}",'
            f'"commandId":"{command_id}","requestedBy":"{requested_by}"}}'
        )
        return Outbound(body.encode(), command_id, action, {"commandId": command_id}, command_id)

    job, task = f"{prefix}000", "task-00000"
    command_id = child_id(child_id(COMMAND_ID, job), job, task)
    expected = Command(action, job, task, ACCOUNT, command_id, requested_by=requested_by).to_message()
    if command(job, task) != expected:
        raise RuntimeError(f"the baseline's template makes {command(job, task)}, the product {expected}")
    token = ManagedIdentityCredential(client_id=settings.client_id).get_token(BATCH_SCOPE).token
    session = requests.Session()
    session.headers.update({"Authorization": f"Bearer {token}", "Accept": "application/json"})
    session.get(f"{batch_url}/jobs", params={"api-version": API_VERSION, "maxresults": "1"}, timeout=30).json()
    queue, listing = StandInQueue(), BareListing(session)
    gc.collect()
    peak = PeakRss()
    cpu = time.process_time()
    started = time.perf_counter()
    job_ids = [job["id"] for page in listing.pages(f"{batch_url}/jobs", job_params) for job in page]
    for job_id in job_ids:
        for page in listing.pages(f"{batch_url}/jobs/{job_id}/tasks", task_params):
            queue.enqueue([command(job_id, task["id"]) for task in page])
    cpu = time.process_time() - cpu
    return {
        "elapsed_s": queue.last_enqueued - started,
        "cpu_s": cpu,
        "rss_growth_mib": peak.growth_mib(),
        "listing_s": listing.listing_s,
        "counts_s": 0.0,
        "batch_calls": listing.calls,
        **queue.figures(),
    }


# --- the benchmark (parent process) -------------------------------------------------------------------


def _measure_in_subprocess(kind: str, prefix: str, emulator: RemoteEmulator) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IDENTITY_ENDPOINT": emulator.identity_url}
    env["IDENTITY_HEADER"] = emulator.identity_secret
    result = subprocess.run(
        [sys.executable, "-m", "bench.fan_out", kind, emulator.batch_url, prefix],
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


def _check(size: str, tasks: int, measured: dict[str, list[dict[str, Any]]]) -> None:
    """Every measurement at a size sent all the commands, the same ones (checksum), with no retried page."""
    for kind, runs in measured.items():
        for figures in runs:
            if figures["commands"] != tasks:
                raise RuntimeError(f"{kind} ({size}) enqueued {figures['commands']} of {tasks} commands")
            if figures["scheduled"]:
                raise RuntimeError(f"{kind} ({size}) retried {figures['scheduled']} listing pages")
    checksums = {figures["checksum"] for runs in measured.values() for figures in runs}
    if len(checksums) != 1:
        raise RuntimeError(f"the {size} measurements did not send the same messages (checksums {checksums})")


def _figures(result: dict[str, Any], name: str, measured: dict[str, list[dict[str, Any]]]) -> None:
    """The medians of one size into ``result``, each figure's name starting with ``name``."""
    expansion, baseline = measured["expansion"], measured["baseline"]
    for kind, runs in measured.items():
        put_median(result, f"{name}{kind}_s", [m["elapsed_s"] for m in runs])
        put_median(result, f"{name}{kind}_cpu_s", [m["cpu_s"] for m in runs])
        put_median(result, f"{name}{kind}_listing_s", [m["listing_s"] for m in runs])
        # The rest of the clock: the product's own work (read, check, choose, build, enqueue, report) and
        # the bare loop's (build and enqueue).
        put_median(result, f"{name}{kind}_own_s", [m["elapsed_s"] - m["listing_s"] - m["counts_s"] for m in runs])
        put_median(result, f"{name}{kind}_rss_growth_mib", [m["rss_growth_mib"] for m in runs])
        result[f"{name}{kind}_batch_calls"] = runs[0]["batch_calls"]
    put_median(result, f"{name}expansion_counts_s", [m["counts_s"] for m in expansion])
    ratios = [e["elapsed_s"] / b["elapsed_s"] for e, b in zip(expansion, baseline, strict=True)]
    put_median(result, f"{name}ratio", ratios)
    put_median(result, f"{name}queue_peak_mib", [m["queue_peak_mib"] for m in expansion])
    result[f"{name}invocations"] = expansion[0]["invocations"]
    result[f"{name}command_bytes"] = expansion[0]["body_bytes"]


def run(jobs: int = 100, tasks_per_job: int = 1000, small_jobs: int = 25, runs: int = 3) -> dict[str, Any]:
    """Seed ``jobs`` and ``small_jobs`` jobs of ``tasks_per_job`` completed tasks, measure both sizes ``runs``
    times; the figures of the larger size are ``<figure>``, the smaller's ``small_<figure>``."""
    sizes = {"large": (LARGE, jobs), "small": (SMALL, small_jobs)}
    measured: dict[str, dict[str, list[dict[str, Any]]]] = {size: {kind: [] for kind in KINDS} for size in sizes}
    with RemoteEmulator() as emulator:
        started = time.perf_counter()
        for prefix, count in sizes.values():
            seed(emulator, prefix, count, tasks_per_job)
        seed(emulator, WARM_UP, WARM_UP_JOBS, WARM_UP_TASKS)
        seed_seconds = time.perf_counter() - started
        for number in range(runs):
            # Alternate which goes first, so drift on a shared machine hits both alike.
            kinds = KINDS if number % 2 == 0 else KINDS[::-1]
            for size, (prefix, _) in sizes.items():
                for kind in kinds:
                    measured[size][kind].append(_measure_in_subprocess(kind, prefix, emulator))
    for size, (_, count) in sizes.items():
        _check(size, count * tasks_per_job, measured[size])
    result: dict[str, Any] = {
        "jobs": jobs,
        "tasks": jobs * tasks_per_job,
        "small_jobs": small_jobs,
        "small_tasks": small_jobs * tasks_per_job,
        "runs": runs,
        "seed_s": seed_seconds,
        "selector": "the retention policy: deleteTask, jobSelect {idPrefix}, select {state: completed, olderThan}",
        "queue": "in-memory StandInQueue (the processor's Bus): selector messages processed, commands counted",
    }
    _figures(result, "", measured["large"])
    _figures(result, "small_", measured["small"])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fan_out")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("batch_url")
    parser.add_argument("prefix", help="the job-id prefix of the size to measure")
    args = parser.parse_args(argv)
    measure = measure_expansion if args.kind == "expansion" else measure_baseline
    print(json.dumps(measure(args.batch_url, args.prefix)))


if __name__ == "__main__":
    main()
