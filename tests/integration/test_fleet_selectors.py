"""Each selector field picks exactly the right targets, and nothing outside the scope guard (README, "Fleet
operations").

The real processor expands each selector against the Batch emulator over HTTP (real tokens); the queue is
``FleetQueue`` (duplicate detection, settlement). Expected targets come from an oracle written here from the
seeds, field by field, independently of ``shared/selectors.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest

from emulators.batch import BatchEmulator
from shared.batch_client import BatchAnswer, BatchClient
from tests.integration.fleet import Fleet

pytestmark = pytest.mark.usefixtures("identity_env")

NOW: Final = datetime.now(UTC)
H: Final = timedelta(hours=1)
D: Final = timedelta(days=1)

# (task id, state, exit code, time in the current state) of one job
TASKS: Final = (
    ("frame-001", "completed", 0, 30 * D),
    ("frame-002", "completed", 1, 30 * D),
    ("frame-003", "completed", 137, 2 * H),
    ("frame-004", "completed", 0, timedelta(minutes=10)),
    ("frame-005", "running", None, 10 * H),
    ("frame-006", "running", None, timedelta(minutes=5)),
    ("frame-007", "active", None, 3 * D),
    ("frame-008", "preparing", None, 65 * timedelta(minutes=1)),
    ("merge-001", "completed", 143, 3 * D),
    ("merge-002", "completed", 0, 3 * D),
    ("merge-003", "active", None, timedelta(minutes=1)),
    ("merge-004", "running", None, 2 * D),
)
DURATIONS: Final = {"PT1H": H, "PT6H": 6 * H, "P1D": D, "P7D": 7 * D}


def seed_tasks(batch: BatchEmulator, job_id: str = "fleet-a") -> None:
    batch.seed_job(job_id)
    batch.seed_tasks(
        job_id,
        [
            {"id": task, "state": state, "exit_code": code, "state_transition_time": NOW - age}
            for task, state, code, age in TASKS
        ],
    )


def task_oracle(selector: dict[str, Any]) -> set[str]:
    """The tasks a selector describes, straight from the seeds."""
    chosen = set()
    for task, state, code, age in TASKS:
        result = None if state != "completed" else ("success" if code == 0 else "failure")
        if "state" in selector and state != selector["state"]:
            continue
        if "result" in selector and result != selector["result"]:
            continue
        if "exitCodes" in selector and (state != "completed" or code not in selector["exitCodes"]):
            continue
        if not task.startswith(selector.get("idPrefix", "")):
            continue
        if "olderThan" in selector and not age > DURATIONS[selector["olderThan"]]:
            continue
        chosen.add(task)
    return chosen


TASK_SELECTORS: Final = [
    {"state": "completed"},
    {"state": "running"},
    {"state": "active"},
    {"state": "preparing"},
    {"result": "failure"},
    {"result": "success"},
    {"exitCodes": [137, 143]},
    {"exitCodes": [0]},
    {"idPrefix": "merge-"},
    {"idPrefix": ""},
    {"olderThan": "PT1H"},
    {"olderThan": "P1D"},
    {"state": "running", "olderThan": "PT6H"},
    {"state": "completed", "result": "failure", "idPrefix": "frame-", "olderThan": "PT1H"},
    {"idPrefix": "nothing-"},
]


@pytest.mark.parametrize("selector", TASK_SELECTORS, ids=str)
def test_each_task_selector_field_picks_exactly_its_tasks(fleet: Fleet, selector: dict[str, Any]) -> None:
    seed_tasks(fleet.batch)
    fleet.run({"action": "deleteTask", "jobId": "fleet-a", "select": selector, "commandId": "sel"})

    expected = task_oracle(selector)
    assert set(fleet.acted("deleteTask")) == {("fleet-a", task) for task in expected}
    assert fleet.tasks_left("fleet-a", [t[0] for t in TASKS]) == {t[0] for t in TASKS} - expected
    final = fleet.final("sel")
    assert (final["decision"], final["fanOut"]["totalSelected"], final["fanOut"]["kind"]) == (
        "succeeded",
        len(expected),
        "tasks",
    )
    assert all(fleet.final(f"sel/fleet-a/{task}")["decision"] == "succeeded" for task in expected)


class UnfilteredBatch(BatchClient):
    """Our own client, made to drop the server-side filter: as if the service ignored it."""

    def list_page(
        self, account: str, path: str, params: Any, next_link: str | None = None, key: str | None = None
    ) -> BatchAnswer:
        kept = {name: value for name, value in params.items() if name != "$filter"}
        return super().list_page(account, path, kept, next_link, key)


@pytest.mark.parametrize("selector", TASK_SELECTORS[4:8] + TASK_SELECTORS[12:14], ids=str)
def test_a_server_that_ignores_the_filter_changes_nothing(
    fleet_factory: Callable[..., Fleet], selector: dict[str, Any]
) -> None:
    fleet = fleet_factory()
    client = fleet.processor._batch
    assert isinstance(client, BatchClient)
    client.__class__ = UnfilteredBatch
    seed_tasks(fleet.batch)
    fleet.run({"action": "deleteTask", "jobId": "fleet-a", "select": selector, "commandId": "sel"})
    assert set(fleet.acted()) == {("fleet-a", task) for task in task_oracle(selector)}
    assert fleet.final("sel")["fanOut"]["totalListed"] == len(TASKS)  # everything crossed the wire


# ---------------------------------------------------------------- jobs

# (job id, state, time in the state, task states)
JOBS: Final = (
    ("fleet-idle-1", "active", 3 * H, ("completed", "completed", "completed")),
    ("fleet-idle-2", "active", timedelta(minutes=10), ("completed", "completed")),
    ("fleet-busy-1", "active", 3 * H, ("completed", "running")),
    ("fleet-busy-2", "active", 3 * H, ("active",)),
    ("fleet-busy-3", "active", 3 * H, ("preparing", "completed")),
    ("fleet-empty-1", "active", 3 * H, ()),
    ("fleet-empty-2", "disabled", 3 * H, ()),
    ("fleet-done-1", "completed", 40 * D, ("completed",)),
    ("fleet-done-2", "completed", D + H, ()),
    ("fleet-term-1", "terminating", 2 * H, ("running",)),
    ("other-idle-1", "active", 3 * H, ("completed",)),
    ("other-empty-1", "active", 3 * H, ()),
)


def seed_jobs(batch: BatchEmulator) -> None:
    batch.seed_jobs(
        {
            "id": job,
            "state": state,
            "state_transition_time": NOW - age,
            "tasks": [{"id": f"t{n}", "state": task_state} for n, task_state in enumerate(task_states)],
        }
        for job, state, age, task_states in JOBS
    )


def job_oracle(selector: dict[str, Any], scope: str = "fleet-") -> set[str]:
    chosen = set()
    for job, state, age, task_states in JOBS:
        if not job.startswith(scope) or not job.startswith(selector.get("idPrefix", "")):
            continue
        if "state" in selector and state != selector["state"]:
            continue
        if "olderThan" in selector and not age > DURATIONS[selector["olderThan"]]:
            continue
        busy = any(s in ("active", "preparing", "running") for s in task_states)
        if selector.get("allTasksComplete") and (busy or not task_states):
            continue
        if selector.get("noTasks") and task_states:
            continue
        chosen.add(job)
    return chosen


JOB_SELECTORS: Final = [
    {"idPrefix": ""},
    {"idPrefix": "fleet-idle"},
    {"state": "completed"},
    {"state": "disabled"},
    {"state": "terminating"},
    {"state": "active"},
    {"olderThan": "P7D"},
    {"olderThan": "PT1H"},
    {"allTasksComplete": True},
    {"noTasks": True},
    {"allTasksComplete": True, "olderThan": "PT1H"},
    {"state": "active", "noTasks": True},
    {"idPrefix": "fleet-busy", "allTasksComplete": True},
]


@pytest.mark.parametrize("selector", JOB_SELECTORS, ids=str)
def test_each_job_selector_field_picks_exactly_its_jobs(fleet: Fleet, selector: dict[str, Any]) -> None:
    seed_jobs(fleet.batch)
    fleet.run({"action": "deleteJob", "select": selector, "commandId": "sel"})

    expected = job_oracle(selector)
    assert set(fleet.acted("deleteJob")) == {(job, None) for job in expected}
    for job, *_ in JOBS:
        assert (fleet.job_state(job) is None) == (job in expected), job  # deleted, or untouched
    final = fleet.final("sel")
    assert (final["decision"], final["fanOut"]["totalSelected"]) == ("succeeded", len(expected))


def test_terminate_job_selector_passes_reason_and_force(fleet: Fleet) -> None:
    seed_jobs(fleet.batch)
    fleet.run(
        {
            "action": "terminateJob",
            "select": {"allTasksComplete": True, "olderThan": "PT1H"},
            "reason": "IdleJob",
            "force": True,
            "commandId": "idle",
        }
    )
    commands = fleet.queue.commands()
    assert {(c.job_id, c.reason, c.force) for c in commands} == {
        ("fleet-idle-1", "IdleJob", True),
        ("fleet-done-1", "IdleJob", True),
    }
    job = fleet.batch.get_job("fleet-idle-1")
    assert job is not None and job["state"] == "completed"
    assert job["executionInfo"]["terminateReason"] == "IdleJob"
    assert fleet.final("idle/fleet-done-1")["decision"] == "alreadyDone"  # already completed: JobCompleted


def test_job_select_picks_the_tasks_of_exactly_the_matching_jobs(fleet: Fleet) -> None:
    seed_jobs(fleet.batch)
    fleet.run(
        {
            "action": "deleteTask",
            "jobSelect": {"idPrefix": "", "olderThan": "PT1H"},
            "select": {"state": "completed"},
            "commandId": "jt",
        }
    )
    expected = {
        (job, f"t{n}")
        for job, state, age, task_states in JOBS
        if job.startswith("fleet-") and age > H
        for n, task_state in enumerate(task_states)
        if task_state == "completed"
    }
    assert set(fleet.acted("deleteTask")) == expected
    assert fleet.batch.get_task("other-idle-1", "t0") is not None
    per_job = {body["commandId"] for body in fleet.queue.selector_bodies() if body.get("jobId")}
    assert per_job == {f"jt/{job}" for job, _ in expected}  # a job without a completed task gets no selector
    assert fleet.final("jt")["fanOut"]["kind"] == "jobsThenTasks"


# ---------------------------------------------------------------- the scope guard


@pytest.mark.parametrize(
    "body",
    [
        {"action": "deleteJob", "select": {"idPrefix": ""}},
        {"action": "terminateJob", "select": {"noTasks": True}},
        {"action": "deleteTask", "jobSelect": {"idPrefix": ""}, "select": {"idPrefix": ""}},
    ],
    ids=["deleteJob", "terminateJob", "jobSelect"],
)
def test_nothing_outside_the_scope_is_ever_touched(fleet: Fleet, body: dict[str, Any]) -> None:
    seed_jobs(fleet.batch)
    fleet.run({**body, "commandId": "everything"})
    assert all(job.startswith("fleet-") for job, _ in fleet.acted())
    assert fleet.acted()
    for job in ("other-idle-1", "other-empty-1"):
        found = fleet.batch.get_job(job)
        assert found is not None and found["state"] == "active"
    assert fleet.batch.get_task("other-idle-1", "t0") is not None


def test_a_task_selector_on_a_job_outside_the_scope_is_refused_without_a_batch_call(fleet: Fleet) -> None:
    seed_jobs(fleet.batch)
    before = fleet.batch.request_count
    fleet.run({"action": "deleteTask", "jobId": "other-idle-1", "select": {"idPrefix": ""}, "commandId": "out"})
    assert fleet.batch.request_count == before
    final = fleet.final("out")
    assert final["deadLetterReason"] == "InvalidCommand"
    assert "jobId 'other-idle-1' is outside FLEET_SCOPE_PREFIXES" in final["detail"]
    assert [reason for _, reason in fleet.queue.dead_letters] == ["InvalidCommand"]


def test_with_the_default_empty_scope_a_selector_is_refused_and_names_the_setting(
    fleet_factory: Callable[..., Fleet],
) -> None:
    fleet = fleet_factory(FLEET_SCOPE_PREFIXES="")
    seed_jobs(fleet.batch)
    fleet.run({"action": "deleteJob", "select": {"idPrefix": "fleet-"}, "commandId": "none"})
    assert "FLEET_SCOPE_PREFIXES is empty" in fleet.final("none")["detail"]
    assert fleet.acted() == [] and fleet.job_state("fleet-idle-1") == "active"


def test_single_target_commands_are_not_restricted_by_the_scope(fleet: Fleet) -> None:
    seed_jobs(fleet.batch)
    fleet.run({"action": "deleteJob", "jobId": "other-empty-1", "commandId": "one"})
    assert fleet.final("one")["decision"] == "succeeded"
    assert fleet.job_state("other-empty-1") is None
