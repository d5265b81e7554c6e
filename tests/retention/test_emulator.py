"""Retention cleanup as a fleet policy, end to end against the Batch emulator: 12 000 tasks in 24 jobs.

The ``RETENTION_*`` settings build the policy; the ``retention_cleanup`` timer only enqueues its selector command;
the fan-out engine (``shared/fanout.py``) does the rest through the real processor. Batch is real HTTP with tokens
from the local identity endpoint; the queue is ``FleetQueue`` (duplicate detection, settlement), drained here.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime

import pytest
from azure.functions.timer import TimerRequest

from emulators.batch import BatchEmulator
from shared.batch_client import BatchAnswer
from shared.config import load_settings
from shared.fanout import Expander
from shared.policies import run_retention
from shared.policy import Policy
from shared.runtime import set_runtime
from tests.fleet_queue import FleetQueue, FleetRuntime
from tests.retention.dataset import RETENTION_DAYS, Dataset
from tests.support import indexed_functions, product_env

pytestmark = pytest.mark.usefixtures("identity_env")


def settings_env(emulator: BatchEmulator, **overrides: str) -> dict[str, str]:
    base = {
        "RETENTION_DAYS": str(RETENTION_DAYS),
        "RETENTION_MAX_COMMANDS": "100000",
        "FLEET_SCOPE_PREFIXES": "ret-,other-",
        "RETRY_MAX_ATTEMPTS": "1",  # a delete in a job that stays terminating is dead-lettered at once
    }
    return product_env(emulator.url, **{**base, **overrides})


def run(emulator: BatchEmulator, dataset: Dataset, **overrides: str) -> tuple[FleetQueue, FleetRuntime]:
    """One timer run at the dataset's time, then every message it leads to."""
    queue = FleetQueue()
    runtime = FleetRuntime(settings_env(emulator, **overrides), queue)
    run_retention(queue, runtime.settings.get(), dataset.now)
    runtime.drain()
    return queue, runtime


def targets(queue: FleetQueue) -> set[tuple[str, str]]:
    """(job, task) of every single-target command the runs enqueued; all must be deleteTask."""
    commands = queue.commands()
    assert {c.action for c in commands} <= {"deleteTask"}
    assert len(commands) == len({(c.job_id, c.task_id) for c in commands}), "a task got two commands"
    return {(c.job_id, c.task_id or "") for c in commands}


def selector_id(queue: FleetQueue) -> str:
    (first, *_) = queue.history
    return str(json.loads(first.body)["commandId"])


def test_the_dataset_is_large_and_mixed(dataset: Dataset) -> None:
    assert dataset.size >= 10_000 and len(dataset.jobs) >= 20
    assert 0 < len(dataset.qualifying(success_only=True)) < len(dataset.qualifying()) < dataset.size


def test_exactly_the_qualifying_tasks_are_deleted(seeded: BatchEmulator, dataset: Dataset) -> None:
    before = seeded.request_count
    queue, _ = run(seeded, dataset)

    expected = dataset.qualifying()
    assert targets(queue) == expected and len(expected) == 6000
    gone = {(job, task) for job, task in expected if seeded.get_task(job, task) is None}
    terminating = {job for job, state in dataset.jobs.items() if state == "terminating"}
    # Batch refuses to delete tasks of a job that is still terminating (JobBeingTerminated, retried, here once).
    assert gone == {(job, task) for job, task in expected if job not in terminating}
    assert all(seeded.get_task(seed.job_id, seed.task_id) for seed in dataset.tasks() if (seed.job_id, seed.task_id)
               not in expected)  # fmt: skip
    final = queue.terminal(selector_id(queue))
    assert [(e["decision"], e["fanOut"]["kind"], e["fanOut"]["totalSelected"]) for e in final] == [
        ("succeeded", "jobsThenTasks", 24)
    ]
    # One job page, Get Task Counts per job, one task page per job (the server filtered), one delete per task.
    assert seeded.request_count - before == 1 + 24 + 24 + 6000


def test_only_succeeded_tasks_when_configured(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue, _ = run(seeded, dataset, RETENTION_TASK_RESULT="success")
    assert targets(queue) == dataset.qualifying(success_only=True) and len(targets(queue)) == 3600


def test_job_prefix_and_state_filter_the_jobs(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue, _ = run(seeded, dataset, RETENTION_JOB_PREFIX="other-", RETENTION_JOB_STATE="active")
    expected = dataset.qualifying(prefix="other-", job_state="active")
    assert targets(queue) == expected and expected


def test_jobs_outside_the_scope_are_never_cleaned(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue, _ = run(seeded, dataset, FLEET_SCOPE_PREFIXES="other-")
    assert targets(queue) == dataset.qualifying(prefix="other-")


def test_with_no_scope_the_run_is_skipped_and_says_which_setting(
    seeded: BatchEmulator, dataset: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    before = seeded.request_count
    with caplog.at_level("WARNING", logger="batch_lifecycle"):
        queue, _ = run(seeded, dataset, FLEET_SCOPE_PREFIXES="")
    assert targets(queue) == set() and seeded.request_count == before
    assert queue.events() == []  # no command was enqueued, so none is dead-lettered every night
    assert any(
        "retentionSkipped" in r.getMessage() and "FLEET_SCOPE_PREFIXES" in r.getMessage() for r in caplog.records
    )


def test_the_bound_caps_a_run_and_reports_that_work_is_left(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue, _ = run(seeded, dataset, RETENTION_MAX_COMMANDS="2345")
    acted = targets(queue)
    assert 0 < len(acted) <= 2345 and acted <= dataset.qualifying()
    (final,) = queue.terminal(selector_id(queue))
    assert final["fanOut"]["limitReached"] is True and final["fanOut"]["remaining"] == 0
    # Listing stopped at the bound instead of reading all 24 jobs' tasks.
    assert final["fanOut"]["totalSelected"] < 24


def test_dry_run_enqueues_nothing_and_reports_what_it_would_do(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue, _ = run(seeded, dataset, RETENTION_DRY_RUN="true")
    assert targets(queue) == set() and len(queue.selector_bodies()) == 1
    assert all(seeded.get_task(s.job_id, s.task_id) for s in dataset.tasks())
    (event,) = queue.events()
    assert (event["decision"], event["dryRun"], event["fanOut"]["totalSelected"]) == ("succeeded", True, 24)
    assert event["fanOut"]["firstTargets"] == sorted(dataset.jobs)[:10]


def test_two_overlapping_runs_of_one_slot_delete_each_task_once(seeded: BatchEmulator, dataset: Dataset) -> None:
    queue = FleetQueue()
    runtime = FleetRuntime(settings_env(seeded), queue)
    start = threading.Barrier(2)

    def one_run() -> None:
        start.wait()
        run_retention(queue, runtime.settings.get(), dataset.now)

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=60)
    assert queue.offered == 2 and len(queue.queue) == 1  # the second run's command had the same id
    runtime.drain()
    assert targets(queue) == dataset.qualifying()


def test_a_failing_task_listing_is_retried_and_loses_nothing(seeded: BatchEmulator, dataset: Dataset) -> None:
    seeded.inject_fault("listTasks", status=500, code="InternalError", count=1)
    queue, _ = run(seeded, dataset, RETRY_MAX_ATTEMPTS="3")
    assert targets(queue) == dataset.qualifying()
    retried = [e for e in queue.events() if e["decision"] == "retry" and e["fanOut"] is not None]
    assert len(retried) == 1 and retried[0]["httpStatus"] == 500


def test_the_timer_function_enqueues_the_policy_with_the_installed_runtime(
    seeded: BatchEmulator, dataset: Dataset
) -> None:
    queue = FleetQueue()
    runtime = FleetRuntime(settings_env(seeded), queue)
    set_runtime(runtime)
    try:
        indexed_functions()["retention_cleanup"].get_user_function()(TimerRequest(past_due=True))
    finally:
        set_runtime(None)
    (command,) = queue.history
    assert command.message_id.startswith("policy:retention-local:") and command.message_id.endswith("030000Z")
    runtime.drain()
    # The timer ran now, not at the dataset's time: a few seconds later, the same tasks are old enough.
    assert targets(queue) == dataset.qualifying()


def test_timer_binding_reads_the_schedule_setting() -> None:
    bindings = [json.loads(raw) for raw in indexed_functions()["retention_cleanup"].get_raw_bindings()]
    (trigger,) = bindings
    assert trigger["type"] == "timerTrigger"
    assert (trigger["schedule"], trigger["runOnStartup"], trigger["useMonitor"]) == (
        "%RETENTION_SCHEDULE%",
        False,
        True,
    )


class RecordingLister:
    """The fan-out's Lister interface in memory: records each listing's path and query, lists nothing."""

    def __init__(self) -> None:
        self.listings: list[tuple[str, dict[str, str]]] = []

    def list_page(
        self, account: str, path: str, params: Mapping[str, str], next_link: str | None = None, key: str | None = None
    ) -> BatchAnswer:
        self.listings.append((path, dict(params)))
        return BatchAnswer(200, body={"value": []})

    def get_task_counts(self, account: str, job_id: str, key: str | None = None) -> BatchAnswer:
        raise AssertionError("no job was listed")


def test_the_listings_ask_batch_what_the_readme_documents(retention_batch: BatchEmulator) -> None:
    env = settings_env(retention_batch, RETENTION_DAYS="14", RETENTION_JOB_PREFIX="nightly-render-",
                       RETENTION_JOB_STATE="completed", RETENTION_TASK_RESULT="success",
                       FLEET_SCOPE_PREFIXES="nightly-")  # fmt: skip
    settings = load_settings(env)
    (policy,) = settings.policies
    as_of = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    lister = RecordingLister()
    expander = Expander(settings.fleet, lister, Policy(), clock=lambda: as_of)
    selection = policy.selection(settings, "policy:retention-local:20261124T023000Z", "retention_cleanup")
    expander.plan(selection)
    expander.plan(selection._replace(job_select=None, job_id="nightly-render-1", limit=10))  # a per-job selector
    assert lister.listings == [
        (
            "/jobs",
            {
                "$select": "id,state,stateTransitionTime",
                "maxresults": "100",
                "$filter": "startswith(id,'nightly-') and startswith(id,'nightly-render-') and state eq 'completed'",
            },
        ),
        (
            "/jobs/nightly-render-1/tasks",
            {
                "$select": "id,state,stateTransitionTime,executionInfo",
                "maxresults": "500",
                "$filter": "state eq 'completed' and executionInfo/result eq 'success' and "
                "stateTransitionTime lt datetime'2026-11-10T02:30:00Z'",
            },
        ),
    ]
