"""Processing one command (shared/processor.py) with in-memory stand-ins of BatchApi and Bus.

docs/design.md, "Guarantees": call Batch -> decide -> (schedule retry copy) -> publish outcome -> settle;
anything failing after the Batch call abandons the message.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import timedelta
from typing import Any, Final

import pytest

from shared.messages import Outbound, Received
from shared.processor import MAX_DESCRIPTION_BYTES, Processor, Result
from tests.unit.helpers import NOW, FakeBatch, FakeBus, answer, make_settings

BASE: Final = 5.0
CAP: Final = 900.0
TOKEN: Final = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJhdWQiOiJodHRwczovL2JhdGNoIn0.c2lnbmF0dXJl"


def run(
    data: dict[str, Any] | bytes,
    batch: FakeBatch | None = None,
    bus: FakeBus | None = None,
    *,
    attempt: int = 1,
    message_id: str | None = "msg-1",
    seed: int = 7,
    **settings: str,
) -> tuple[Result, FakeBatch, FakeBus]:
    batch = batch or FakeBatch()
    bus = bus or FakeBus()
    processor = Processor(make_settings(**settings), batch, bus, clock=lambda: NOW, rng=random.Random(seed))
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    return processor.process(Received.read(raw, message_id, {"attempt": attempt})), batch, bus


def terminate_task(**fields: Any) -> dict[str, Any]:
    return {"action": "terminateTask", "jobId": "job-1", "taskId": "task-1", "commandId": "cmd-1", **fields}


def only_event(bus: FakeBus) -> dict[str, Any]:
    events = bus.events()
    assert len(events) == 1, events
    return events[0]


# ---------------------------------------------------------------- invalid messages


def test_an_invalid_message_is_dead_lettered_with_every_problem_and_no_batch_call() -> None:
    result, batch, bus = run({"action": "terminateTask", "jobId": "bad id", "force": "yes", "colour": "blue"})
    assert result.settlement.kind == "deadletter"
    assert result.settlement.reason == "InvalidCommand"
    description = result.settlement.description or ""
    for fragment in ("unknown fields ['colour']", "jobId 'bad id' is invalid", "taskId is required", "force"):
        assert fragment in description
    assert batch.calls == 0
    assert bus.scheduled == []
    event = only_event(bus)
    assert event["decision"] == "deadLetter"
    assert event["deadLetterReason"] == "InvalidCommand"
    assert event["commandId"] == "msg-1"
    # The fields that did parse are kept, so a subscriber can tell whose command it was.
    assert (event["action"], event["jobId"], event["account"]) == ("terminateTask", None, "prod")
    assert "jobId 'bad id' is invalid" in event["detail"]
    message = bus.published[0]
    assert message.subject == "terminateTask"
    assert message.message_id == "msg-1"
    assert message.application_properties["errorCode"] == "InvalidCommand"


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"not json", b"[1, 2]", b"[" * 30_000, b"{}" + b" " * 70_000])
def test_unreadable_bodies_are_invalid_commands(raw: bytes) -> None:
    result, batch, bus = run(raw)
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "InvalidCommand")
    assert batch.calls == 0
    assert only_event(bus)["deadLetterReason"] == "InvalidCommand"


def test_a_body_in_data_sections_is_joined() -> None:
    batch, bus = FakeBatch(), FakeBus()
    processor = Processor(make_settings(), batch, bus, clock=lambda: NOW)
    sections = [b'{"action":"terminateJob",', b'"jobId":"job-1"}']
    result = processor.process(Received.read(iter(sections), "m-1"))
    assert result.settlement.kind == "complete"
    assert batch.executed[0].job_id == "job-1"


def test_a_body_that_is_no_data_section_is_an_invalid_command() -> None:
    bus = FakeBus()
    processor = Processor(make_settings(), FakeBatch(), bus, clock=lambda: NOW)
    result = processor.process(Received.read({"amqp": "value"}, None))
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "InvalidCommand")
    assert only_event(bus)["commandId"].startswith("invalid:")


def test_an_invalid_message_without_message_id_gets_a_stable_fingerprint() -> None:
    first, _, bus_a = run(b"nope", message_id=None)
    second, _, bus_b = run(b"nope", message_id=None)
    assert first.outcome.command_id == second.outcome.command_id
    assert first.outcome.command_id.startswith("invalid:")
    assert bus_a.published[0].message_id == bus_b.published[0].message_id


def test_an_unconfigured_account_is_an_invalid_command() -> None:
    result, batch, _ = run(terminate_task(account="staging"))
    assert result.settlement.reason == "InvalidCommand"
    assert "account 'staging' is not configured" in (result.settlement.description or "")
    assert batch.calls == 0


# ---------------------------------------------------------------- decisions and settlements


def test_success_completes_and_publishes_succeeded() -> None:
    result, batch, bus = run(terminate_task(requestedBy="oncall@contoso"), FakeBatch(answer(204)))
    assert result.settlement.kind == "complete"
    assert [c.command_id for c in batch.executed] == ["cmd-1"]
    assert bus.scheduled == []
    event = only_event(bus)
    assert (event["decision"], event["httpStatus"], event["requestedBy"]) == ("succeeded", 204, "oncall@contoso")
    assert event["retryAt"] is None
    assert bus.published[0].message_id == "cmd-1"


@pytest.mark.parametrize(
    ("action", "status", "code", "expected"),
    [
        ("deleteTask", 200, None, ("succeeded", "complete", None)),
        ("terminateJob", 202, None, ("succeeded", "complete", None)),
        ("deleteTask", 404, "TaskNotFound", ("alreadyDone", "complete", None)),
        ("terminateTask", 409, "TaskCompleted", ("alreadyDone", "complete", None)),
        ("reactivateTask", 409, "TaskNotCompleted", ("alreadyDone", "complete", None)),
        ("terminateJob", 409, "JobCompleted", ("alreadyDone", "complete", None)),
        ("terminateTask", 404, "TaskNotFound", ("deadLetter", "deadletter", "TaskNotFound")),
        ("reactivateTask", 409, "TaskSucceeded", ("deadLetter", "deadletter", "TaskSucceeded")),
        ("deleteTask", 412, "ConditionNotMet", ("deadLetter", "deadletter", "PreconditionFailed")),
        ("deleteTask", 403, "AccountIsDisabled", ("deadLetter", "deadletter", "AccountIsDisabled")),
        ("deleteTask", 400, None, ("deadLetter", "deadletter", "HttpStatus400")),
        ("deleteTask", 409, "JobBeingTerminated", ("retry", "complete", None)),
        ("deleteTask", 503, "ServerBusy", ("retry", "complete", None)),
        ("deleteTask", None, "TransportError", ("retry", "complete", None)),
    ],
)
def test_each_decision_settles_the_right_way(
    action: str, status: int | None, code: str | None, expected: tuple[str, str, str | None]
) -> None:
    decision, kind, reason = expected
    data: dict[str, Any] = {"action": action, "jobId": "job-1", "commandId": "cmd-1"}
    if action != "terminateJob":
        data["taskId"] = "task-1"
    result, _, bus = run(data, FakeBatch(answer(status, code, "Batch said no")))
    assert (result.settlement.kind, result.settlement.reason) == (kind, reason)
    event = only_event(bus)
    assert event["decision"] == decision
    assert event["deadLetterReason"] == reason
    assert len(bus.scheduled) == (1 if decision == "retry" else 0)
    if kind == "deadletter":
        description = result.settlement.description or ""
        assert f"{action} on job job-1" in description
        assert (code or f"HTTP {status}") in description


def test_a_decision_override_from_the_settings_is_applied() -> None:
    overrides = json.dumps({"terminateTask:TaskNotFound": "alreadyDone"})
    result, _, bus = run(terminate_task(), FakeBatch(answer(404, "TaskNotFound")), DECISION_OVERRIDES=overrides)
    assert result.settlement.kind == "complete"
    assert only_event(bus)["decision"] == "alreadyDone"


# ---------------------------------------------------------------- retry


def scheduled_copy(bus: FakeBus) -> Outbound:
    assert len(bus.scheduled) == 1
    return bus.scheduled[0]


@pytest.mark.parametrize("attempt", [1, 2, 5, 7])
def test_retry_schedules_a_copy_with_its_own_message_id_then_completes(attempt: int) -> None:
    result, _, bus = run(terminate_task(), FakeBatch(answer(503, "ServerBusy")), attempt=attempt)
    assert result.settlement.kind == "complete"
    copy = scheduled_copy(bus)
    assert copy.message_id == f"cmd-1#{attempt + 1}"
    assert copy.application_properties["attempt"] == attempt + 1
    assert copy.application_properties["commandId"] == "cmd-1"
    assert copy.correlation_id == "cmd-1"
    assert copy.subject == "terminateTask"
    assert json.loads(copy.body) == {
        "action": "terminateTask",
        "jobId": "job-1",
        "taskId": "task-1",
        "account": "prod",
        "commandId": "cmd-1",
    }
    assert copy.scheduled_enqueue_time is not None
    delay = (copy.scheduled_enqueue_time - NOW).total_seconds()
    assert 0 <= delay <= min(CAP, BASE * 2 ** (attempt - 1))
    event = only_event(bus)
    assert event["decision"] == "retry"
    assert event["attempt"] == attempt
    assert event["retryAt"] == copy.scheduled_enqueue_time.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert bus.published[0].message_id == f"cmd-1#{attempt}"


def test_retry_copies_spread_over_the_backoff_window() -> None:
    delays = []
    for seed in range(60):
        _, _, bus = run(terminate_task(), FakeBatch(answer(503, "ServerBusy")), attempt=4, seed=seed)
        when = scheduled_copy(bus).scheduled_enqueue_time
        assert when is not None
        delays.append((when - NOW).total_seconds())
    assert all(0 <= d <= 40 for d in delays)
    assert max(delays) - min(delays) > 20


def test_retry_is_never_sooner_than_retry_after() -> None:
    _, _, bus = run(terminate_task(), FakeBatch(answer(429, "TooManyRequests", retry_after=120.0)), attempt=1)
    when = scheduled_copy(bus).scheduled_enqueue_time
    assert when is not None
    assert when - NOW >= timedelta(seconds=120)


def test_retry_after_above_the_cap_still_wins() -> None:
    _, _, bus = run(
        terminate_task(),
        FakeBatch(answer(503, "ServerBusy", retry_after=3600.0)),
        RETRY_MAX_DELAY_SECONDS="60",
    )
    when = scheduled_copy(bus).scheduled_enqueue_time
    assert when == NOW + timedelta(seconds=3600)


def test_the_retry_copy_keeps_every_field_of_the_command() -> None:
    data = {
        "action": "terminateJob",
        "jobId": "job-1",
        "account": "dev",
        "reason": "superseded",
        "force": True,
        "ifUnmodifiedSince": "Sun, 06 Nov 1994 08:49:37 GMT",
        "requestedBy": "oncall@contoso",
    }
    _, _, bus = run(data, FakeBatch(answer(500, "InternalError")), message_id="sb-77")
    body = json.loads(scheduled_copy(bus).body)
    assert body == {**data, "commandId": "sb-77"}


def test_the_last_attempt_dead_letters_retries_exhausted() -> None:
    result, _, bus = run(
        terminate_task(), FakeBatch(answer(503, "ServerBusy", "The server is busy.")), attempt=3, RETRY_MAX_ATTEMPTS="3"
    )
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "RetriesExhausted")
    description = result.settlement.description or ""
    assert description.startswith("gave up after 3 attempts")
    assert "ServerBusy: The server is busy." in description
    assert bus.scheduled == []
    event = only_event(bus)
    assert (event["decision"], event["deadLetterReason"], event["attempt"]) == ("deadLetter", "RetriesExhausted", 3)
    assert bus.published[0].application_properties["errorCode"] == "RetriesExhausted"


def test_the_attempt_before_the_last_still_retries() -> None:
    result, _, bus = run(terminate_task(), FakeBatch(answer(503, "ServerBusy")), attempt=2, RETRY_MAX_ATTEMPTS="3")
    assert result.settlement.kind == "complete"
    assert scheduled_copy(bus).message_id == "cmd-1#3"


def test_401_retries_once_for_a_token_refresh() -> None:
    result, _, bus = run(terminate_task(), FakeBatch(answer(401, "AuthenticationFailed")), attempt=1)
    assert result.settlement.kind == "complete"
    assert scheduled_copy(bus).message_id == "cmd-1#2"


@pytest.mark.parametrize("code", ["AuthenticationFailed", "InvalidAuthenticationInfo"])
def test_401_on_attempt_2_is_dead_lettered_with_its_code(code: str) -> None:
    result, _, bus = run(terminate_task(), FakeBatch(answer(401, code, "Server failed to authenticate")), attempt=2)
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", code)
    assert bus.scheduled == []
    assert only_event(bus)["deadLetterReason"] == code


# ---------------------------------------------------------------- failures after the Batch call


def test_a_publish_failure_abandons_the_message() -> None:
    result, batch, _ = run(terminate_task(), FakeBatch(answer(204)), FakeBus(fail_publish=True))
    assert result.settlement.kind == "abandon"
    assert "BusDown" in (result.settlement.description or "")
    assert len(batch.executed) == 1
    assert result.log_fields["settlement"] == "abandon"


def test_a_publish_failure_of_a_dead_letter_abandons_too() -> None:
    result, _, _ = run(terminate_task(), FakeBatch(answer(404, "TaskNotFound")), FakeBus(fail_publish=True))
    assert result.settlement.kind == "abandon"


def test_a_publish_failure_after_scheduling_a_retry_abandons() -> None:
    result, _, bus = run(terminate_task(), FakeBatch(answer(503, "ServerBusy")), FakeBus(fail_publish=True))
    assert result.settlement.kind == "abandon"
    assert len(bus.scheduled) == 1  # the redelivery repeats it under the same message_id: duplicate detection drops it


def test_a_schedule_failure_abandons_and_publishes_nothing() -> None:
    result, _, bus = run(terminate_task(), FakeBatch(answer(503, "ServerBusy")), FakeBus(fail_schedule=True))
    assert result.settlement.kind == "abandon"
    assert bus.published == []
    assert bus.scheduled == []


def test_an_invalid_message_whose_outcome_cannot_be_published_is_abandoned() -> None:
    result, batch, _ = run(b"not json", bus=FakeBus(fail_publish=True))
    assert result.settlement.kind == "abandon"
    assert batch.calls == 0


# ---------------------------------------------------------------- dry runs


def job_state(state: str) -> FakeBatch:
    return FakeBatch(job_answer=answer(200, body={"id": "job-1", "state": state}))


def task_state(state: str, exit_code: int | None = None, result: str | None = None) -> FakeBatch:
    info: dict[str, Any] = {}
    if exit_code is not None:
        info["exitCode"] = exit_code
    if result is not None:
        info["result"] = result
    body: dict[str, Any] = {"id": "task-1", "state": state}
    if info:
        body["executionInfo"] = info
    return FakeBatch(
        job_answer=answer(200, body={"id": "job-1", "state": "active"}),
        task_answer=answer(200, body=body),
    )


@pytest.mark.parametrize(
    ("action", "batch", "decision"),
    [
        # The job's state decides first (the table of docs/design.md, "Decision policy", decides the predicted answer).
        ("terminateTask", job_state("completed"), "alreadyDone"),
        ("terminateTask", job_state("terminating"), "alreadyDone"),
        ("terminateTask", job_state("deleting"), "alreadyDone"),
        ("reactivateTask", job_state("completed"), "deadLetter"),
        ("reactivateTask", job_state("terminating"), "deadLetter"),
        ("reactivateTask", job_state("deleting"), "deadLetter"),
        ("deleteTask", job_state("terminating"), "retry"),
        ("deleteTask", job_state("deleting"), "alreadyDone"),
        ("terminateJob", job_state("completed"), "alreadyDone"),
        ("terminateJob", job_state("terminating"), "alreadyDone"),
        ("terminateJob", job_state("deleting"), "alreadyDone"),
        ("terminateJob", job_state("active"), "succeeded"),
        # Then the task's.
        ("terminateTask", task_state("completed", 0, "success"), "alreadyDone"),
        ("terminateTask", task_state("completed", 3, "failure"), "alreadyDone"),
        ("terminateTask", task_state("active"), "succeeded"),
        ("terminateTask", task_state("running"), "succeeded"),
        ("reactivateTask", task_state("completed", 0, "success"), "deadLetter"),
        ("reactivateTask", task_state("completed", 0), "deadLetter"),
        ("reactivateTask", task_state("completed", 3, "failure"), "succeeded"),
        ("reactivateTask", task_state("active"), "alreadyDone"),
        ("reactivateTask", task_state("running"), "alreadyDone"),
        ("deleteTask", task_state("completed", 0, "success"), "succeeded"),
        ("deleteTask", task_state("active"), "succeeded"),
    ],
)
def test_a_dry_run_reports_the_predicted_decision_and_changes_nothing(
    action: str, batch: FakeBatch, decision: str
) -> None:
    data: dict[str, Any] = {"action": action, "jobId": "job-1", "dryRun": True, "commandId": "dry-1"}
    if action != "terminateJob":
        data["taskId"] = "task-1"
    result, _, bus = run(data, batch)
    assert batch.executed == []
    assert result.settlement.kind == "complete"
    assert bus.scheduled == []
    event = only_event(bus)
    assert (event["decision"], event["dryRun"]) == (decision, True)
    assert event["detail"].startswith(f"dry run: the real call would be decided {decision}")
    assert event["retryAt"] is None


def test_a_dry_run_of_a_completed_job_reads_the_task_before_a_delete() -> None:
    # Tasks of a completed job can still be deleted: the task read decides.
    batch = FakeBatch(
        job_answer=answer(200, body={"state": "completed"}), task_answer=answer(200, body={"state": "completed"})
    )
    result, _, bus = run({"action": "deleteTask", "jobId": "job-1", "taskId": "task-1", "dryRun": True}, batch)
    assert [read[0] for read in batch.reads] == ["job", "task"]
    assert only_event(bus)["decision"] == "succeeded"
    assert result.settlement.kind == "complete"


def test_a_dry_run_of_a_missing_job_predicts_its_not_found_decision() -> None:
    batch = FakeBatch(job_answer=answer(404, "JobNotFound"))
    result, _, bus = run({"action": "deleteTask", "jobId": "job-1", "taskId": "t", "dryRun": True}, batch)
    assert result.settlement.kind == "complete"
    assert (only_event(bus)["decision"], batch.executed) == ("alreadyDone", [])


def test_a_dry_run_whose_read_fails_transiently_is_retried() -> None:
    batch = FakeBatch(job_answer=answer(503, "ServerBusy"))
    result, _, bus = run({"action": "terminateJob", "jobId": "job-1", "dryRun": True, "commandId": "d"}, batch)
    assert result.settlement.kind == "complete"
    assert batch.executed == []
    assert json.loads(scheduled_copy(bus).body)["dryRun"] is True
    assert only_event(bus)["decision"] == "retry"


# ---------------------------------------------------------------- descriptions and logs


def test_a_dead_letter_description_fits_in_1024_bytes() -> None:
    long_message = "é" * 3000  # two bytes each in UTF-8
    result, _, bus = run(terminate_task(), FakeBatch(answer(404, "TaskNotFound", long_message)))
    description = result.settlement.description or ""
    assert len(description.encode("utf-8")) <= MAX_DESCRIPTION_BYTES
    assert description.endswith("...")
    assert len(only_event(bus)["detail"].encode("utf-8")) <= MAX_DESCRIPTION_BYTES


def test_an_invalid_command_description_fits_in_1024_bytes() -> None:
    data = {f"unknown_field_number_{i:03d}_ü": i for i in range(200)}
    result, _, _ = run(data)
    description = result.settlement.description or ""
    assert description.startswith("invalid command: ")
    assert len(description.encode("utf-8")) <= MAX_DESCRIPTION_BYTES


def test_a_retries_exhausted_description_fits_in_1024_bytes() -> None:
    result, _, _ = run(terminate_task(), FakeBatch(answer(503, "ServerBusy", "x" * 5000)), attempt=8)
    assert result.settlement.reason == "RetriesExhausted"
    assert len((result.settlement.description or "").encode("utf-8")) <= MAX_DESCRIPTION_BYTES


def processed_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == "batch_lifecycle"]


def test_one_json_log_line_per_command(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batch_lifecycle")
    batch = FakeBatch(answer(409, "TaskCompleted", request_id="9f1e7c3a-0000-4000-8000-00000000abcd"))
    run(terminate_task(requestedBy="oncall@contoso"), batch)
    lines = processed_lines(caplog)
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "commandProcessed"
    assert (record["commandId"], record["action"], record["decision"]) == ("cmd-1", "terminateTask", "alreadyDone")
    assert record["batchRequestId"] == "9f1e7c3a-0000-4000-8000-00000000abcd"
    assert (record["jobId"], record["taskId"], record["account"]) == ("job-1", "task-1", "prod")
    assert (record["httpStatus"], record["errorCode"], record["settlement"]) == (409, "TaskCompleted", "complete")
    assert isinstance(record["totalMs"], int)


def test_the_log_line_never_carries_the_token_or_batch_free_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    batch = FakeBatch(
        answer(
            401,
            "AuthenticationFailed",
            f"Server failed to authenticate the request. Bearer {TOKEN}",
            values=(("AuthenticationErrorDetail", f"token {TOKEN} has the wrong audience"),),
        )
    )
    run(terminate_task(), batch, attempt=2)
    lines = processed_lines(caplog)
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["decision"] == "deadLetter"
    assert record["deadLetterReason"] == "AuthenticationFailed"
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert "Bearer" not in lines[0]


def test_an_invalid_command_is_logged_too(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batch_lifecycle")
    run(b"not json", message_id="bad-1")
    record = json.loads(processed_lines(caplog)[0])
    assert (record["commandId"], record["decision"], record["deadLetterReason"]) == (
        "bad-1",
        "deadLetter",
        "InvalidCommand",
    )
    assert record["batchRequestId"] is None


def test_an_abandon_is_logged_with_its_cause(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="batch_lifecycle")
    run(terminate_task(), bus=FakeBus(fail_publish=True))
    record = json.loads(processed_lines(caplog)[0])
    assert (record["settlement"], record["abandonCause"]) == ("abandon", "BusDown")
