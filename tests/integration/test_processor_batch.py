"""The queue function's handler against the Batch emulator over HTTP, with the real credential.

Batch is real HTTP to the emulator; the token comes from the local identity endpoint through
azure-identity's ManagedIdentityCredential. The Service Bus side is the in-memory ``MemoryBus``
(the real SDK path runs end-to-end in tests/e2e).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from shared.messages import Received, read_attempt
from shared.processor import Processor, Result
from shared.runtime import Runtime
from tests.support import MemoryBus, product_env
from tests.unit.test_policy import ACTIONS as DESIGN_ACTIONS
from tests.unit.test_policy import CODE_ROWS, FALL, status_row


@dataclass
class Harness:
    processor: Processor
    bus: MemoryBus
    batch: BatchEmulator

    def send(self, body: dict[str, Any] | bytes, message_id: str = "msg-1") -> Result:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.processor.process(Received.read(raw, message_id))

    def redeliver_scheduled(self) -> Result:
        """Deliver the oldest scheduled retry copy, as Service Bus would when it falls due."""
        copy = self.bus.scheduled.pop(0)
        attempt = read_attempt({k: str(v) for k, v in copy.application_properties.items()})
        return self.processor.process(Received.read(copy.body, copy.message_id, {"attempt": attempt}))

    def last_event(self) -> dict[str, Any]:
        return self.bus.events()[-1]


@pytest.fixture
def make_harness(batch: BatchEmulator, identity_env: IdentityEndpoint) -> Callable[..., Harness]:
    def make(**overrides: str) -> Harness:
        runtime = Runtime(product_env(batch.url, **overrides))
        bus = MemoryBus()
        processor = Processor(runtime.settings.get(), runtime.batch.get(), bus)
        return Harness(processor, bus, batch)

    return make


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()


def task_command(action: str, job: str = "job1", task: str = "t1", **extra: Any) -> dict[str, Any]:
    return {"action": action, "jobId": job, "taskId": task, "commandId": f"{action}-{job}-{task}", **extra}


# --- each action succeeds -------------------------------------------------------------------


def test_terminate_task_succeeds_and_task_completes(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    result = harness.send(task_command("terminateTask"))
    assert result.settlement.kind == "complete"
    event = harness.last_event()
    assert (event["decision"], event["httpStatus"]) == ("succeeded", 204)
    assert event["batchRequestId"] and event["clientRequestId"]
    task = harness.batch.get_task("job1", "t1")
    assert task is not None and task["state"] == "completed"


def test_delete_task_succeeds_and_task_is_gone(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="completed", exit_code=0)
    result = harness.send(task_command("deleteTask"))
    assert result.settlement.kind == "complete"
    assert harness.last_event()["decision"] == "succeeded"
    assert harness.batch.get_task("job1", "t1") is None


def test_reactivate_failed_task_succeeds_and_task_is_active(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="completed", exit_code=3)
    harness.send(task_command("reactivateTask"))
    assert harness.last_event()["decision"] == "succeeded"
    task = harness.batch.get_task("job1", "t1")
    assert task is not None and task["state"] == "active"


def test_terminate_job_succeeds_with_reason(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.send({"action": "terminateJob", "jobId": "job1", "reason": "OpsStop", "commandId": "tj-1"})
    event = harness.last_event()
    assert (event["decision"], event["httpStatus"], event["taskId"]) == ("succeeded", 202, None)
    job = harness.batch.get_job("job1")
    assert job is not None and job["state"] in ("terminating", "completed")
    assert job["executionInfo"]["terminateReason"] == "OpsStop"


# --- answers that arise from real state -----------------------------------------------------


@pytest.mark.parametrize(
    ("action", "arrange", "decision", "code"),
    [
        ("deleteTask", "no-task", "alreadyDone", "TaskNotFound"),
        ("deleteTask", "no-job", "alreadyDone", "JobNotFound"),
        ("terminateTask", "no-task", "deadLetter", "TaskNotFound"),
        ("terminateTask", "no-job", "deadLetter", "JobNotFound"),
        ("terminateTask", "task-completed", "alreadyDone", "TaskCompleted"),
        ("reactivateTask", "no-task", "deadLetter", "TaskNotFound"),
        ("reactivateTask", "task-running", "alreadyDone", "TaskNotCompleted"),
        ("reactivateTask", "task-succeeded", "deadLetter", "TaskSucceeded"),
        ("reactivateTask", "job-completed", "deadLetter", "JobCompleted"),
        ("reactivateTask", "job-terminating", "deadLetter", "JobBeingTerminated"),
        ("reactivateTask", "job-deleting", "deadLetter", "JobBeingDeleted"),
        ("terminateTask", "job-deleting", "alreadyDone", "JobBeingDeleted"),
        ("deleteTask", "job-deleting", "alreadyDone", "JobBeingDeleted"),
    ],
)
def test_task_answers_from_state(harness: Harness, action: str, arrange: str, decision: str, code: str) -> None:
    arrange_state(harness.batch, arrange)
    result = harness.send(task_command(action))
    event = harness.last_event()
    assert (event["decision"], event["batchError"]["code"]) == (decision, code)
    expected_settlement = "deadletter" if decision == "deadLetter" else "complete"
    assert result.settlement.kind == expected_settlement
    if decision == "deadLetter":
        assert result.settlement.reason == code
        assert event["deadLetterReason"] == code


@pytest.mark.parametrize(
    ("state", "code"),
    [("completed", "JobCompleted"), ("terminating", "JobBeingTerminated"), ("deleting", "JobBeingDeleted")],
)
def test_terminate_job_already_on_its_way_is_already_done(harness: Harness, state: str, code: str) -> None:
    harness.batch.seed_job("job1", state=state)
    result = harness.send({"action": "terminateJob", "jobId": "job1", "commandId": "tj"})
    assert result.settlement.kind == "complete"
    event = harness.last_event()
    assert (event["decision"], event["batchError"]["code"]) == ("alreadyDone", code)


def test_terminate_missing_job_is_dead_lettered(harness: Harness) -> None:
    result = harness.send({"action": "terminateJob", "jobId": "nojob", "commandId": "tj"})
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "JobNotFound")


def test_if_match_mismatch_is_precondition_failed(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    result = harness.send(task_command("terminateTask", ifMatch="0x8D00000000000000"))
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "PreconditionFailed")
    assert harness.last_event()["httpStatus"] == 412
    task = harness.batch.get_task("job1", "t1")
    assert task is not None and task["state"] == "running"


def test_if_match_with_current_etag_succeeds(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    task = harness.batch.get_task("job1", "t1")
    assert task is not None
    harness.send(task_command("terminateTask", ifMatch=task["eTag"]))
    assert harness.last_event()["decision"] == "succeeded"


def test_delete_in_terminating_job_retries_until_the_job_completes(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness()
    harness.batch.set_job_transition_delay(terminate=0.5, delete=0.0)
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="completed", exit_code=0)
    harness.send({"action": "terminateJob", "jobId": "job1", "commandId": "tj"})
    first = harness.send(task_command("deleteTask"))
    assert first.settlement.kind == "complete"
    assert harness.last_event()["decision"] == "retry"
    assert job_state(harness.batch, "job1") == "terminating"
    wait_for(lambda: job_state(harness.batch, "job1") == "completed")
    harness.redeliver_scheduled()
    assert harness.last_event()["decision"] == "succeeded"
    assert harness.batch.get_task("job1", "t1") is None


# --- service faults: retry, then success ----------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503, "code": "ServerBusy"},
        {"status": 429, "code": "TooManyRequests", "retry_after": 0.2},
        {"status": 500, "code": "InternalError"},
        {"status": 500, "code": "OperationTimedOut"},
        {"status": 502, "code": None},
        {"status": 504, "code": None},
        {"status": 408, "code": None},
        {"drop_connection": True},
        {"latency": 1.5},
        {"status": 403, "code": "InsufficientAccountPermissions"},
        {"status": 401, "code": "AuthenticationFailed"},
    ],
    ids=lambda fault: "-".join(f"{k}={v}" for k, v in fault.items()),
)
def test_transient_fault_is_retried_then_succeeds(make_harness: Callable[..., Harness], fault: dict[str, Any]) -> None:
    harness = make_harness(BATCH_READ_TIMEOUT_SECONDS="0.5")
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    harness.batch.inject_fault(operation="terminateTask", count=1, **fault)

    first = harness.send(task_command("terminateTask"))
    assert first.settlement.kind == "complete"
    retry_event = harness.last_event()
    assert retry_event["decision"] == "retry" and retry_event["retryAt"]
    copy = harness.bus.scheduled[0]
    assert copy.message_id == "terminateTask-job1-t1#2"
    assert copy.application_properties["attempt"] == 2
    assert copy.scheduled_enqueue_time is not None
    if fault.get("retry_after"):
        delay = (copy.scheduled_enqueue_time - _parse(retry_event["occurredAt"])).total_seconds()
        assert delay >= fault["retry_after"] - 0.01

    second = harness.redeliver_scheduled()
    assert second.settlement.kind == "complete"
    final = harness.last_event()
    assert (final["decision"], final["attempt"], final["commandId"]) == ("succeeded", 2, "terminateTask-job1-t1")


def test_exhausted_retries_are_dead_lettered_with_the_last_error(make_harness: Callable[..., Harness]) -> None:
    harness = make_harness(RETRY_MAX_ATTEMPTS="3")
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    harness.batch.inject_fault(operation="terminateTask", status=503, code="ServerBusy", count=10)
    harness.send(task_command("terminateTask"))
    harness.redeliver_scheduled()
    result = harness.redeliver_scheduled()
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "RetriesExhausted")
    assert "ServerBusy" in (result.settlement.description or "")
    assert harness.bus.scheduled == []
    assert [e["decision"] for e in harness.bus.events()] == ["retry", "retry", "deadLetter"]


def test_authentication_failure_gives_up_after_two_attempts(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    harness.batch.inject_fault(operation="terminateTask", status=401, code="AuthenticationFailed", count=5)
    harness.send(task_command("terminateTask"))
    result = harness.redeliver_scheduled()
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "AuthenticationFailed")


@pytest.mark.parametrize(
    ("status", "code"), [(403, "AccountIsDisabled"), (400, "InvalidHeaderValue"), (413, "RequestBodyTooLarge")]
)
def test_permanent_service_answers_are_dead_lettered(harness: Harness, status: int, code: str) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    harness.batch.inject_fault(operation="terminateTask", status=status, code=code, count=1)
    result = harness.send(task_command("terminateTask"))
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", code)
    assert harness.bus.scheduled == []


# --- invalid messages, publish failures, dry runs -------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        json.dumps({"action": "deleteTask", "jobId": "job1"}).encode(),
        json.dumps({"action": "explode", "jobId": "job1", "taskId": "t1"}).encode(),
        json.dumps({"action": "deleteTask", "jobId": "../x", "taskId": "t1"}).encode(),
        json.dumps({"action": "deleteTask", "jobId": "job1", "taskId": "t1", "tsakId": "t2"}).encode(),
    ],
)
def test_invalid_message_is_dead_lettered_without_a_batch_call(harness: Harness, body: bytes) -> None:
    before = harness.batch.request_count
    result = harness.send(body)
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "InvalidCommand")
    assert harness.batch.request_count == before
    event = harness.last_event()
    assert (event["decision"], event["deadLetterReason"]) == ("deadLetter", "InvalidCommand")


def test_publish_failure_abandons_and_redelivery_is_already_done(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="completed", exit_code=0)
    harness.bus.fail_publish = 1
    first = harness.send(task_command("deleteTask"))
    assert first.settlement.kind == "abandon"
    assert harness.batch.get_task("job1", "t1") is None  # the Batch call did happen
    second = harness.send(task_command("deleteTask"))  # Service Bus delivers it again
    assert second.settlement.kind == "complete"
    event = harness.last_event()
    assert (event["decision"], event["batchError"]["code"]) == ("alreadyDone", "TaskNotFound")


def test_schedule_failure_abandons_and_publishes_nothing(harness: Harness) -> None:
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    harness.batch.inject_fault(operation="terminateTask", status=503, code="ServerBusy", count=1)
    harness.bus.fail_schedule = 1
    result = harness.send(task_command("terminateTask"))
    assert result.settlement.kind == "abandon"
    assert harness.bus.published == []


@pytest.mark.parametrize(
    ("action", "arrange", "decision"),
    [
        ("terminateTask", "task-running", "succeeded"),
        ("terminateTask", "task-completed", "alreadyDone"),
        ("deleteTask", "no-task", "alreadyDone"),
        ("reactivateTask", "task-succeeded", "deadLetter"),
        ("reactivateTask", "task-failed", "succeeded"),
        ("reactivateTask", "job-terminating", "deadLetter"),
    ],
)
def test_dry_run_reports_the_decision_and_changes_nothing(
    harness: Harness, action: str, arrange: str, decision: str
) -> None:
    arrange_state(harness.batch, arrange)
    before = harness.batch.get_task("job1", "t1")
    result = harness.send(task_command(action, dryRun=True))
    assert result.settlement.kind == "complete"
    event = harness.last_event()
    assert (event["decision"], event["dryRun"]) == (decision, True)
    assert harness.batch.get_task("job1", "t1") == before


# --- helpers --------------------------------------------------------------------------------


def arrange_state(batch: BatchEmulator, arrange: str) -> None:
    """Put job1/t1 into the named situation through the emulator's control API."""
    if arrange == "no-job":
        return
    job_state = {"job-completed": "completed", "job-terminating": "terminating", "job-deleting": "deleting"}
    batch.seed_job("job1", state=job_state.get(arrange, "active"))
    if arrange == "no-task":
        return
    task_state = {
        "task-running": ("running", None),
        "task-completed": ("completed", 1),
        "task-succeeded": ("completed", 0),
        "task-failed": ("completed", 2),
    }
    state, exit_code = task_state.get(arrange, ("completed", 1))
    batch.seed_task("job1", "t1", state=state, exit_code=exit_code)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def job_state(batch: BatchEmulator, job_id: str) -> str | None:
    job = batch.get_job(job_id)
    return None if job is None else str(job["state"])


# --- every code row of the decision table (docs/design.md, "Decision policy"), for every action, through real HTTP

EVERY_CODE_CELL = [
    pytest.param(action, status, code, cell, id=f"{code}-{action}")
    for status, code, cells in CODE_ROWS
    for action, cell in zip(DESIGN_ACTIONS, cells, strict=True)
]


@pytest.mark.parametrize(("action", "status", "code", "cell"), EVERY_CODE_CELL)
def test_every_batch_error_code_leads_to_the_designed_outcome_and_settlement(
    harness: Harness, action: str, status: int, code: str, cell: str
) -> None:
    decision = status_row(status) if cell == FALL else cell
    harness.batch.seed_job("job1")
    harness.batch.seed_task("job1", "t1", state="running")
    harness.batch.inject_fault(operation=action, status=status, code=code, count=1)
    job_action = action in ("terminateJob", "deleteJob")
    body = task_command(action) if not job_action else {"action": action, "jobId": "job1", "commandId": "c"}

    result = harness.send(body)

    event = harness.last_event()
    assert (event["decision"], event["httpStatus"], event["batchError"]["code"]) == (decision, status, code)
    assert event["batchRequestId"]
    expected_settlement = {"deadLetter": "deadletter"}.get(decision, "complete")
    assert result.settlement.kind == expected_settlement
    assert len(harness.bus.scheduled) == (1 if decision == "retry" else 0)
    if decision == "deadLetter":
        assert result.settlement.reason == ("PreconditionFailed" if code == "ConditionNotMet" else code)
