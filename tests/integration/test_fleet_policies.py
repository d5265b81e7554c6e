"""Policies on a seeded account (README, "Fleet operations"): each template does what its name says, policies start
in dry run, overlapping timer runs double nothing, and an alert can run a policy by name.

The timer and HTTP functions are function_app's own, driven with a Runtime whose queue is ``FleetQueue``; every
message they lead to runs through the real processor against the Batch emulator over HTTP.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from shared.policies import TEMPLATES, run_policies
from shared.runtime import set_runtime
from tests.fleet_queue import FleetQueue, FleetRuntime
from tests.support import indexed_functions, product_env

NOW: Final = datetime.now(UTC)
H: Final = timedelta(hours=1)
D: Final = timedelta(days=1)

# (job, state, time in state, tasks: (id, state, exit code, time in state)); "other-" jobs are outside the scope.
ACCOUNT: Final = (
    ("fleet-old-done", "completed", 40 * D, (("a", "completed", 0, 41 * D), ("b", "completed", 1, 41 * D))),
    ("fleet-recent-done", "completed", 2 * D, (("a", "completed", 0, 2 * D),)),
    ("fleet-idle", "active", 3 * H, (("old", "completed", 0, 10 * D), ("new", "completed", 0, H))),
    ("fleet-young-idle", "active", 10 * timedelta(minutes=1), (("a", "completed", 0, 5 * timedelta(minutes=1)),)),
    (
        "fleet-busy",
        "active",
        3 * D,
        (
            ("stuck", "running", None, 10 * H),
            ("fresh", "running", None, H),
            ("oom", "completed", 137, 2 * D),
            ("bug", "completed", 1, 2 * D),
            ("done", "completed", 0, 10 * D),
            ("waiting", "active", None, 3 * D),
        ),
    ),
    ("fleet-empty", "active", 3 * H, ()),
    ("fleet-empty-young", "active", 5 * timedelta(minutes=1), ()),
    ("other-old-done", "completed", 40 * D, (("a", "completed", 0, 41 * D),)),
    ("other-idle", "active", 3 * H, (("a", "completed", 0, 10 * D),)),
    ("other-busy", "active", 3 * D, (("stuck", "running", None, 10 * H), ("oom", "completed", 137, 2 * D))),
    ("other-empty", "active", 3 * H, ()),
)


def seed(batch: BatchEmulator) -> None:
    batch.seed_jobs(
        {
            "id": job,
            "state": state,
            "state_transition_time": NOW - age,
            "creation_time": NOW - 60 * D,
            "tasks": [
                {"id": task, "state": task_state, "exit_code": code, "state_transition_time": NOW - task_age}
                for task, task_state, code, task_age in tasks
            ],
        }
        for job, state, age, tasks in ACCOUNT
    )


def snapshot(batch: BatchEmulator) -> dict[str, Any]:
    """Every job's state and every task's state, for comparing before and after."""
    found: dict[str, Any] = {}
    for job, _, _, tasks in ACCOUNT:
        data = batch.get_job(job)
        found[job] = None if data is None else data["state"]
        for task, *_ in tasks:
            task_data = batch.get_task(job, task)
            found[f"{job}/{task}"] = None if task_data is None else task_data["state"]
    return found


@pytest.fixture
def install(batch: BatchEmulator, identity_env: IdentityEndpoint) -> Iterator[Callable[..., FleetRuntime]]:
    def make(policies: list[dict[str, Any]], **overrides: str) -> FleetRuntime:
        settings = {"FLEET_SCOPE_PREFIXES": "fleet-", "POLICIES": json.dumps(policies), "RETRY_MAX_ATTEMPTS": "2"}
        env = product_env(batch.url, **{**settings, **overrides})
        runtime = FleetRuntime(env, FleetQueue())
        set_runtime(runtime)
        return runtime

    yield make
    set_runtime(None)


def fire_timer() -> None:
    indexed_functions()["run_policies"].get_user_function()(TimerRequest(past_due=False))


# What each template changes on the seeded account: key -> state after (None = gone); everything else unchanged.
EFFECTS: Final[dict[str, dict[str, str | None]]] = {
    "delete-old-completed-tasks": {
        "fleet-old-done/a": None,
        "fleet-old-done/b": None,
        "fleet-idle/old": None,
        "fleet-busy/done": None,
    },
    "complete-idle-jobs": {"fleet-idle": "completed"},
    "delete-old-completed-jobs": {
        "fleet-old-done": None,
        "fleet-old-done/a": None,
        "fleet-old-done/b": None,
    },
    "terminate-stuck-tasks": {"fleet-busy/stuck": "completed"},
    "terminate-orphan-empty-jobs": {"fleet-empty": "completed"},
    "reactivate-tasks-failed-with-exit-codes": {"fleet-busy/oom": "active"},
}


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_template_does_what_its_name_says(
    batch: BatchEmulator, install: Callable[..., FleetRuntime], name: str
) -> None:
    seed(batch)
    before = snapshot(batch)
    runtime = install([{"name": name, **TEMPLATES[name], "dryRun": False}])
    fire_timer()
    runtime.drain()

    after = snapshot(batch)
    changed = {key: state for key, state in after.items() if before[key] != state}
    assert changed == EFFECTS[name]
    (command,) = runtime.queue.history[:1]
    final = runtime.queue.terminal(command.message_id)
    assert [e["decision"] for e in final] == ["succeeded"]
    assert command.message_id.startswith(f"policy:{name}:")


def test_a_policy_starts_in_dry_run_and_changes_nothing(
    batch: BatchEmulator, install: Callable[..., FleetRuntime]
) -> None:
    seed(batch)
    before = snapshot(batch)
    runtime = install([{"name": name, **fields} for name, fields in TEMPLATES.items()])
    fire_timer()
    runtime.drain()
    assert snapshot(batch) == before
    assert runtime.queue.commands() == []
    finals = [e for e in runtime.queue.events() if e["decision"] == "succeeded"]
    assert len(finals) == len(TEMPLATES) and all(e["dryRun"] for e in finals)
    by_policy = {e["commandId"].split(":")[1]: e["fanOut"] for e in finals}
    assert by_policy["complete-idle-jobs"]["firstTargets"] == ["fleet-idle"]
    assert by_policy["terminate-orphan-empty-jobs"]["firstTargets"] == ["fleet-empty"]


def test_two_overlapping_timer_runs_double_nothing(batch: BatchEmulator, install: Callable[..., FleetRuntime]) -> None:
    seed(batch)
    runtime = install([{"name": name, **fields, "dryRun": False} for name, fields in TEMPLATES.items()])
    settings = runtime.settings.get()
    start = threading.Barrier(2)

    def one_run(now: datetime) -> None:
        start.wait()
        run_policies(runtime.queue, settings, now)

    slot_start = NOW.replace(minute=0, second=0, microsecond=0)  # the hourly POLICY_SCHEDULE's occurrence
    runs = [
        threading.Thread(target=one_run, args=(slot_start + timedelta(seconds=s),)) for s in (1, 1800)
    ]  # one on time, one past due in the same slot
    for thread in runs:
        thread.start()
    for thread in runs:
        thread.join(timeout=30)
    assert len(runtime.queue.queue) == len(TEMPLATES)  # the second run's commands had the same ids
    runtime.drain()
    targets = [(c.action, c.job_id, c.task_id) for c in runtime.queue.commands()]
    assert len(targets) == len(set(targets))
    assert set(targets) >= {("terminateJob", "fleet-idle", None), ("reactivateTask", "fleet-busy", "oom")}
    assert set(runtime.queue.deliveries.values()) == {1}  # no message, page or target, ran twice


def test_the_timer_binding_reads_the_policy_schedule() -> None:
    (trigger,) = [json.loads(raw) for raw in indexed_functions()["run_policies"].get_raw_bindings()]
    assert (trigger["type"], trigger["schedule"], trigger["runOnStartup"], trigger["useMonitor"]) == (
        "timerTrigger",
        "%POLICY_SCHEDULE%",
        False,
        True,
    )


# ---------------------------------------------------------------- alerts


def alert(alert_id: str, condition: str = "Fired", **properties: str) -> dict[str, Any]:
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {"alertId": alert_id, "alertRule": "idle-jobs", "monitorCondition": condition},
            "alertContext": {},
            "customProperties": properties,
        },
    }


def post(payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    request = func.HttpRequest(method="POST", url="/api/alerts", body=json.dumps(payload).encode(), headers={})
    response = indexed_functions()["alerts"].get_user_function()(request)
    return response.status_code, json.loads(response.get_body())


def test_an_alert_naming_a_policy_runs_it_once(batch: BatchEmulator, install: Callable[..., FleetRuntime]) -> None:
    seed(batch)
    runtime = install([{"name": "idle", **TEMPLATES["complete-idle-jobs"], "dryRun": False}])
    status, answer = post(alert("/alerts/a-1", batchPolicy="idle"))
    assert status == 202, answer
    (command,) = answer["commands"]
    assert command["commandId"].startswith("policy:idle:alert-") and command["policy"] == "idle"
    assert post(alert("/alerts/a-1", batchPolicy="idle"))[0] == 202  # Azure Monitor's retry: the same id
    runtime.drain()
    job = batch.get_job("fleet-idle")
    assert job is not None and job["state"] == "completed"
    assert [c.job_id for c in runtime.queue.commands()] == ["fleet-idle"]
    assert runtime.queue.deliveries[command["commandId"]] == 1


IDLE_POLICY: Final = [{"name": "idle", **TEMPLATES["complete-idle-jobs"]}]


@pytest.mark.parametrize(
    ("policies", "scope", "properties", "reason"),
    [
        (
            IDLE_POLICY,
            "fleet-",
            {"batchPolicy": "nope"},
            "batchPolicy 'nope' is not a configured policy (POLICIES or the retention shorthand); "
            "configured policies: 'idle', 'retention-local'",
        ),
        (
            IDLE_POLICY,
            "fleet-",
            {"batchPolicy": "idle", "batchAction": "terminateTask"},
            "batchPolicy names a whole policy (its action, account and selectors); remove ['batchAction']",
        ),
        (
            [],
            "",  # the retention policy exists, but with no job in scope it cannot run
            {"batchPolicy": "retention-local"},
            "policy 'retention-local' cannot run: selectors are disabled: FLEET_SCOPE_PREFIXES is empty",
        ),
    ],
    ids=["unknown", "with-batchAction", "out-of-scope"],
)
def test_an_alert_naming_an_unknown_or_unusable_policy_gets_a_clear_400(
    install: Callable[..., FleetRuntime],
    policies: list[dict[str, Any]],
    scope: str,
    properties: dict[str, str],
    reason: str,
) -> None:
    runtime = install(policies, FLEET_SCOPE_PREFIXES=scope)
    status, answer = post(alert("/alerts/a-2", **properties))
    assert status == 400 and answer["reason"].startswith(reason), answer
    assert runtime.queue.history == []


def test_a_resolved_alert_naming_a_policy_runs_nothing(install: Callable[..., FleetRuntime]) -> None:
    runtime = install([{"name": "idle", **TEMPLATES["complete-idle-jobs"]}])
    status, answer = post(alert("/alerts/a-3", condition="Resolved", batchPolicy="idle"))
    assert status == 200 and "only Fired alerts" in answer["reason"]
    assert runtime.queue.history == []
