"""Retention against the Batch emulator over real HTTP: 12 000 tasks in 24 jobs, mixed states and ages.

Tokens come from the local identity endpoint through azure-identity's ManagedIdentityCredential; the
queue is the in-memory ``MemoryQueue`` with duplicate detection, as the product's queue has it.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime

import pytest
from azure.functions.timer import TimerRequest

from emulators.batch import BatchEmulator
from shared.retention import RetentionSummary, run_retention
from shared.runtime import Runtime, set_runtime
from tests.retention.dataset import RETENTION_DAYS, Dataset
from tests.retention.memory_queue import MemoryQueue, MemoryRuntime
from tests.support import indexed_functions, product_env

pytestmark = pytest.mark.usefixtures("identity_env")


def settings_env(emulator: BatchEmulator, **overrides: str) -> dict[str, str]:
    base = {"RETENTION_DAYS": str(RETENTION_DAYS), "RETENTION_MAX_COMMANDS": "1000000"}
    return product_env(emulator.url, **{**base, **overrides})


def run(emulator: BatchEmulator, dataset: Dataset, queue: MemoryQueue, **overrides: str) -> RetentionSummary:
    runtime = Runtime(settings_env(emulator, **overrides))
    return run_retention(runtime.batch.get(), queue, runtime.settings.get(), dataset.now)


def targets(queue: MemoryQueue) -> set[tuple[str, str]]:
    """(job, task) of every queued command, read back through the contract; all must be deleteTask."""
    commands = queue.commands(["local"], "local")
    assert {c.action for c in commands} <= {"deleteTask"}
    return {(c.job_id, c.task_id or "") for c in commands}


def test_the_dataset_is_large_and_mixed(dataset: Dataset) -> None:
    assert dataset.size >= 10_000 and len(dataset.jobs) >= 20
    assert 0 < len(dataset.qualifying(success_only=True)) < len(dataset.qualifying()) < dataset.size


def test_exactly_the_qualifying_tasks_are_enqueued(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = MemoryQueue()
    requests_before = seeded.request_count
    summary = run(seeded, dataset, queue)

    expected = dataset.qualifying()
    assert targets(queue) == expected
    assert queue.offered == len(queue.queued) == summary.commands_enqueued == len(expected) == 6000
    assert summary.jobs_scanned == 24 and not summary.limit_reached and summary.listing_errors == 0
    # The server did the filtering: only qualifying tasks crossed the wire, one page per job.
    assert summary.tasks_seen == len(expected) and summary.skipped == 0
    assert seeded.request_count - requests_before == 1 + 24


def test_only_succeeded_tasks_when_configured(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = MemoryQueue()
    summary = run(seeded, dataset, queue, RETENTION_TASK_RESULT="success")
    assert targets(queue) == dataset.qualifying(success_only=True)
    assert summary.tasks_seen == summary.commands_enqueued == 3600


def test_job_prefix_and_state_filter_the_jobs(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = MemoryQueue()
    summary = run(seeded, dataset, queue, RETENTION_JOB_PREFIX="other-", RETENTION_JOB_STATE="active")
    expected = dataset.qualifying(prefix="other-", job_state="active")
    assert targets(queue) == expected and expected
    assert summary.jobs_scanned == sum(
        1 for job, state in dataset.jobs.items() if job.startswith("other-") and state == "active"
    )


def test_the_bound_caps_a_run_and_reports_that_work_is_left(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = MemoryQueue()
    summary = run(seeded, dataset, queue, RETENTION_MAX_COMMANDS="2345")
    assert len(queue.queued) == queue.offered == summary.commands_enqueued == 2345
    assert targets(queue) <= dataset.qualifying()
    assert summary.limit_reached
    # Listing stopped near the bound instead of reading all 24 jobs.
    assert summary.jobs_scanned < 24


def test_dry_run_enqueues_nothing_and_reports_what_it_would_do(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = MemoryQueue()
    summary = run(seeded, dataset, queue, RETENTION_DRY_RUN="true")
    assert queue.offered == 0
    assert (summary.commands_planned, summary.commands_enqueued, summary.dry_run) == (6000, 0, True)
    (event,) = [json.loads(m.body) for m in queue.published]
    assert event["commandsPlanned"] == 6000 and event["dryRun"] is True


def test_two_overlapping_runs_enqueue_each_task_once(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = MemoryQueue()
    start = threading.Barrier(2)
    summaries: list[RetentionSummary] = []

    def one_run() -> None:
        runtime = Runtime(settings_env(seeded))
        start.wait()
        summaries.append(run_retention(runtime.batch.get(), queue, runtime.settings.get(), dataset.now))

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=120)

    expected = dataset.qualifying()
    assert [s.commands_enqueued for s in summaries] == [len(expected)] * 2
    # Both runs sent every command; the shared message ids let duplicate detection keep one of each.
    assert queue.offered == 2 * len(expected)
    assert len(queue.queued) == len(expected) and targets(queue) == expected


def test_a_failing_job_listing_skips_only_that_job(seeded: BatchEmulator, dataset: Dataset) -> None:
    seeded.inject_fault("listTasks", status=500, code="InternalError", count=1)
    try:
        queue = MemoryQueue()
        summary = run(seeded, dataset, queue)
    finally:
        seeded.clear_faults()
    first_job = min(dataset.jobs)  # the emulator lists jobs in id order
    assert summary.listing_errors == 1
    assert targets(queue) == {t for t in dataset.qualifying() if t[0] != first_job}


def test_next_links_are_followed_past_the_first_page(batch: BatchEmulator) -> None:
    old = datetime(2026, 1, 1, tzinfo=UTC)
    batch.seed_job("big")
    batch.seed_tasks(
        "big", ({"id": f"t{n:04d}", "state": "completed", "state_transition_time": old} for n in range(2500))
    )
    queue = MemoryQueue()
    runtime = Runtime(product_env(batch.url, RETENTION_MAX_COMMANDS="1000000"))
    summary = run_retention(runtime.batch.get(), queue, runtime.settings.get(), datetime.now(UTC))
    assert summary.commands_enqueued == len(queue.queued) == 2500
    assert batch.request_count == 1 + 3  # jobs, then three task pages of at most 1000


def test_the_timer_function_runs_a_cleanup_with_the_installed_runtime(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = MemoryQueue()
    set_runtime(MemoryRuntime(settings_env(seeded), queue))
    try:
        indexed_functions()["retention_cleanup"].get_user_function()(TimerRequest(past_due=True))
    finally:
        set_runtime(None)
    assert targets(queue) == dataset.qualifying()
    (summary,) = queue.published
    assert summary.subject == "retentionSummary" and summary.application_properties["decision"] == "summary"


def test_timer_binding_reads_the_schedule_setting() -> None:
    bindings = [json.loads(raw) for raw in indexed_functions()["retention_cleanup"].get_raw_bindings()]
    (trigger,) = bindings
    assert trigger["type"] == "timerTrigger"
    assert (trigger["schedule"], trigger["runOnStartup"], trigger["useMonitor"]) == (
        "%RETENTION_SCHEDULE%",
        False,
        True,
    )
