"""The outcome event (docs/design.md, "Outcome events"): Outcome.event() against schemas/outcome.schema.json,
and the topic message's properties."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from shared.batch_client import BatchAnswer, BatchError
from shared.messages import Received
from shared.outcome import Outcome
from shared.processor import Processor
from tests.unit.helpers import NOW, FakeBatch, FakeBus, SchemaValidator, answer, make_settings

VALIDATOR: Final = SchemaValidator(schemas.OUTCOME)
ACTIONS: Final = ("terminateTask", "deleteTask", "reactivateTask", "terminateJob", "deleteJob")
ERROR: Final = BatchError(
    "TaskCompleted",
    "The specified task is already in a completed state.",
    (("Reason", "completed"),),
)


def outcome(**fields: Any) -> Outcome:
    base: dict[str, Any] = {
        "command_id": "cmd-1",
        "action": "terminateTask",
        "account": "prod",
        "job_id": "job-1",
        "task_id": "task-1",
        "decision": "succeeded",
        "attempt": 1,
        "occurred_at": NOW,
        "answer": answer(204),
    }
    base.update(fields)
    return Outcome(**base)


def assert_valid(event: dict[str, Any]) -> None:
    errors = VALIDATOR.errors(event)
    assert not errors, (errors, event)
    assert json.loads(json.dumps(event)) == event


DIRECT_CASES: Final = {
    "succeeded": outcome(),
    "succeeded, no request id": outcome(answer=answer(204, request_id=None)),
    "alreadyDone with Batch error": outcome(decision="alreadyDone", answer=answer(409, "TaskCompleted", "done")),
    "alreadyDone with values": outcome(
        decision="alreadyDone", answer=BatchAnswer(409, ERROR, "rid", "cid", None, None, 8)
    ),
    "retry": outcome(
        decision="retry", answer=answer(503, "ServerBusy", retry_after=10.0), retry_at=NOW + timedelta(seconds=12.5)
    ),
    "retry, transport error": outcome(
        decision="retry",
        answer=BatchAnswer(None, BatchError("TransportError", "no answer from Batch: ConnectTimeout")),
        retry_at=NOW + timedelta(seconds=3),
        attempt=4,
    ),
    "deadLetter with error": outcome(
        decision="deadLetter",
        answer=answer(404, "TaskNotFound", "gone"),
        dead_letter_reason="TaskNotFound",
        detail="terminateTask on job job-1 task task-1 in account prod: Batch gave HTTP 404 TaskNotFound: gone",
    ),
    "deadLetter without Batch error body": outcome(
        decision="deadLetter", answer=answer(400), dead_letter_reason="HttpStatus400", detail="bad request"
    ),
    "deadLetter retries exhausted": outcome(
        decision="deadLetter",
        answer=answer(503, "ServerBusy"),
        dead_letter_reason="RetriesExhausted",
        detail="gave up after 8 attempts",
        attempt=8,
    ),
    "deadLetter invalid command": outcome(
        command_id="sha256-0123456789abcdef0123456789abcdef",
        action=None,
        account=None,
        job_id=None,
        task_id=None,
        decision="deadLetter",
        answer=None,
        dead_letter_reason="InvalidCommand",
        detail="body is not valid JSON",
    ),
    "terminateJob without task": outcome(action="terminateJob", task_id=None, answer=answer(202)),
    "dry run succeeded": outcome(dry_run=True, answer=answer(200, body={"state": "active"}), detail="dry run: ..."),
    "dry run retry": outcome(decision="retry", dry_run=True, detail="dry run: would retry"),
    "dry run deadLetter": outcome(
        decision="deadLetter", dry_run=True, answer=answer(404, "JobNotFound"), detail="dry run: ..."
    ),
    "requestedBy and odd clock": outcome(
        requested_by="oncall@contoso",
        occurred_at=datetime(2026, 11, 24, 5, 0, tzinfo=timezone(timedelta(hours=1))),
    ),
}


@pytest.mark.parametrize("name", DIRECT_CASES)
def test_every_kind_of_outcome_validates(name: str) -> None:
    assert_valid(DIRECT_CASES[name].event())


def test_the_schema_lists_exactly_the_event_fields() -> None:
    event = outcome().event()
    schema = VALIDATOR.schema
    assert set(schema["properties"]) == set(event)
    assert set(schema["required"]) == set(event)
    assert schema["additionalProperties"] is False
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"]


def test_times_are_utc_with_milliseconds() -> None:
    event = outcome(
        decision="retry",
        occurred_at=datetime(2026, 11, 24, 5, 0, 0, 123456, tzinfo=timezone(timedelta(hours=1))),
        retry_at=datetime(2026, 11, 24, 4, 0, 30, tzinfo=UTC),
    ).event()
    assert event["occurredAt"] == "2026-11-24T04:00:00.123Z"
    assert event["retryAt"] == "2026-11-24T04:00:30.000Z"


def test_the_batch_error_is_carried_whole() -> None:
    event = outcome(decision="alreadyDone", answer=BatchAnswer(409, ERROR, "rid", "cid", None, None, 8)).event()
    assert event["batchError"] == {
        "code": "TaskCompleted",
        "message": "The specified task is already in a completed state.",
        "values": [{"key": "Reason", "value": "completed"}],
    }
    assert (event["httpStatus"], event["batchRequestId"], event["clientRequestId"], event["durationMs"]) == (
        409,
        "rid",
        "cid",
        8,
    )


def test_without_a_batch_call_the_answer_fields_are_null() -> None:
    event = DIRECT_CASES["deadLetter invalid command"].event()
    assert {k: event[k] for k in ("httpStatus", "batchError", "batchRequestId", "clientRequestId")} == dict.fromkeys(
        ("httpStatus", "batchError", "batchRequestId", "clientRequestId")
    )
    assert event["durationMs"] == 0


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"extra": 1}, "unknown field"),
        ({"decision": "done"}, "decision outside the enum"),
        ({"action": "purgeJob"}, "action outside the enum"),
        ({"decision": "expanding"}, "expanding without fanOut"),
        ({"fanOut": {"page": 1}}, "fanOut missing its fields"),
        ({"attempt": 0}, "attempt below 1"),
        ({"attempt": "1"}, "attempt as text"),
        ({"dryRun": None}, "dryRun null"),
        ({"durationMs": -1}, "negative duration"),
        ({"occurredAt": "2026-11-24 04:00:00"}, "not ISO 8601 UTC"),
        ({"occurredAt": None}, "occurredAt null"),
        ({"batchError": {"code": "X", "message": "m"}}, "batchError without values"),
        ({"retryAt": "2026-11-24T04:00:00.000Z"}, "retryAt on a non-retry"),
        ({"deadLetterReason": "TaskNotFound"}, "deadLetterReason on a non-deadLetter"),
        ({"commandId": ""}, "empty commandId"),
    ],
)
def test_the_schema_refuses_what_the_code_never_produces(change: dict[str, Any], why: str) -> None:
    event = {**outcome().event(), **change}
    assert not VALIDATOR.is_valid(event), why


def test_the_schema_refuses_a_missing_field() -> None:
    event = outcome().event()
    for name in event:
        assert not VALIDATOR.is_valid({k: v for k, v in event.items() if k != name}), name


def test_a_real_retry_needs_its_retry_at_and_a_real_dead_letter_its_reason() -> None:
    assert not VALIDATOR.is_valid(outcome(decision="retry").event())
    assert not VALIDATOR.is_valid(outcome(decision="deadLetter").event())


# ---------------------------------------------------------------- events the processor publishes

STATUSES: Final = (None, 200, 202, 204, 400, 401, 403, 404, 409, 412, 429, 500, 502, 503, 504)
CODES: Final = (
    None,
    "TaskNotFound",
    "JobNotFound",
    "TaskCompleted",
    "TaskNotCompleted",
    "TaskSucceeded",
    "JobCompleted",
    "JobBeingTerminated",
    "JobBeingDeleted",
    "ConditionNotMet",
    "AuthenticationFailed",
    "InsufficientAccountPermissions",
    "AccountIsDisabled",
    "ServerBusy",
    "TransportError",
    "SomethingNew",
)
JOB_STATES: Final = ("active", "completed", "terminating", "deleting")
TASK_BODIES: Final[tuple[dict[str, Any], ...]] = (
    {"state": "active"},
    {"state": "running"},
    {"state": "completed", "executionInfo": {"exitCode": 0, "result": "success"}},
    {"state": "completed", "executionInfo": {"exitCode": 1, "result": "failure"}},
)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, Any], FakeBatch, int]:
    action = draw(st.sampled_from(ACTIONS))
    data: dict[str, Any] = {"action": action, "jobId": "job-1", "commandId": "cmd-1"}
    if action != "terminateJob":
        data["taskId"] = "task-1"
    if draw(st.booleans()):
        data["requestedBy"] = draw(st.text(max_size=256))
    dry_run = draw(st.booleans())
    if dry_run:
        data["dryRun"] = True
    status = draw(st.sampled_from(STATUSES))
    code = draw(st.sampled_from(CODES)) if status is None or status >= 300 else None
    if status is None:
        code = "TransportError"
    scripted = answer(
        status,
        code,
        draw(st.text(max_size=400)),
        retry_after=draw(st.none() | st.floats(min_value=0, max_value=7200)),
        duration_ms=draw(st.integers(min_value=0, max_value=60_000)),
    )
    job = answer(200, body={"state": draw(st.sampled_from(JOB_STATES))}) if draw(st.booleans()) else scripted
    task = answer(200, body=draw(st.sampled_from(TASK_BODIES)))
    batch = FakeBatch(execute_answer=scripted, job_answer=job, task_answer=task)
    return data, batch, draw(st.integers(min_value=1, max_value=9))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.integers(min_value=0, max_value=2**16))
def test_every_event_the_processor_publishes_validates(
    scenario: tuple[dict[str, Any], FakeBatch, int], seed: int
) -> None:
    data, batch, attempt = scenario
    bus = FakeBus()
    processor = Processor(make_settings(), batch, bus, clock=lambda: NOW, rng=random.Random(seed))
    result = processor.process(Received.read(json.dumps(data).encode(), "msg-1", {"attempt": attempt}))
    assert len(bus.published) == 1
    event = json.loads(bus.published[0].body)
    assert_valid(event)
    assert event["decision"] == result.outcome.decision
    assert event["dryRun"] == bool(data.get("dryRun"))


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.none() | st.text(min_size=1, max_size=40))
def test_the_event_for_any_invalid_message_validates(raw: bytes, message_id: str | None) -> None:
    bus = FakeBus()
    Processor(make_settings(), FakeBatch(), bus, clock=lambda: NOW).process(Received.read(raw, message_id))
    assert_valid(json.loads(bus.published[0].body))


# ---------------------------------------------------------------- the topic message


def test_message_properties_of_a_dead_letter() -> None:
    message = outcome(
        decision="deadLetter",
        answer=answer(404, "TaskNotFound"),
        dead_letter_reason="TaskNotFound",
        attempt=3,
    ).message()
    assert message.message_id == "cmd-1"
    assert message.correlation_id == "cmd-1"
    assert message.subject == "terminateTask"
    assert message.content_type == "application/json"
    assert message.scheduled_enqueue_time is None
    assert dict(message.application_properties) == {
        "decision": "deadLetter",
        "action": "terminateTask",
        "jobId": "job-1",
        "taskId": "task-1",
        "account": "prod",
        "errorCode": "TaskNotFound",
        "dryRun": False,
    }
    assert (
        json.loads(message.body)
        == outcome(
            decision="deadLetter", answer=answer(404, "TaskNotFound"), dead_letter_reason="TaskNotFound", attempt=3
        ).event()
    )


def test_the_dead_letter_reason_is_the_error_code_property_when_they_differ() -> None:
    message = outcome(
        decision="deadLetter", answer=answer(412, "ConditionNotMet"), dead_letter_reason="PreconditionFailed"
    ).message()
    assert message.application_properties["errorCode"] == "PreconditionFailed"


def test_the_batch_code_is_the_error_code_property_without_a_dead_letter() -> None:
    message = outcome(decision="alreadyDone", answer=answer(409, "TaskCompleted")).message()
    assert message.application_properties["errorCode"] == "TaskCompleted"
    assert message.application_properties["decision"] == "alreadyDone"


def test_a_success_has_an_empty_error_code_and_terminate_job_an_empty_task() -> None:
    message = outcome(action="terminateJob", task_id=None, answer=answer(202)).message()
    assert message.application_properties["errorCode"] == ""
    assert message.application_properties["taskId"] == ""
    assert message.subject == "terminateJob"


def test_an_invalid_command_has_subject_invalid_and_empty_properties() -> None:
    message = DIRECT_CASES["deadLetter invalid command"].message()
    assert message.subject == "invalid"
    assert message.message_id == "sha256-0123456789abcdef0123456789abcdef"
    assert dict(message.application_properties) == {
        "decision": "deadLetter",
        "action": "",
        "jobId": "",
        "taskId": "",
        "account": "",
        "errorCode": "InvalidCommand",
        "dryRun": False,
    }


@pytest.mark.parametrize("decision", ["succeeded", "alreadyDone", "deadLetter"])
def test_a_terminal_outcome_has_one_message_id_whatever_the_attempt(decision: str) -> None:
    ids = {outcome(attempt=attempt, decision=decision).message().message_id for attempt in (1, 2, 8)}
    assert ids == {"cmd-1"}


def test_terminal_decisions_of_one_command_share_the_id_so_the_topic_drops_the_second() -> None:
    first = outcome(attempt=1, decision="succeeded").message().message_id
    assert outcome(attempt=3, decision="alreadyDone").message().message_id == first


def test_each_retry_event_has_the_attempt_in_its_id() -> None:
    ids = [outcome(attempt=attempt, decision="retry").message().message_id for attempt in (1, 2, 3)]
    assert ids == ["cmd-1#1", "cmd-1#2", "cmd-1#3"]
    assert (
        outcome(attempt=1, decision="retry").message().message_id != outcome(decision="succeeded").message().message_id
    )


def test_a_dry_run_never_shares_an_id_with_the_real_run() -> None:
    real = {outcome(decision=d, attempt=1).message().message_id for d in ("succeeded", "retry")}
    dry = {outcome(decision=d, attempt=1, dry_run=True).message().message_id for d in ("succeeded", "retry")}
    assert dry == {"cmd-1#dryRun", "cmd-1#dryRun#1"}
    assert not real & dry


def test_a_dry_run_says_so_in_a_property_a_filter_can_read() -> None:
    predicted = outcome(decision="deadLetter", dead_letter_reason="TaskNotFound", dry_run=True).message()
    assert predicted.application_properties["dryRun"] is True
    assert predicted.application_properties["decision"] == "deadLetter"


def test_the_longest_ids_fit_the_service_bus_limit() -> None:
    longest = "c" * 100
    for decision, dry_run in (("succeeded", True), ("retry", True), ("retry", False)):
        message_id = outcome(command_id=longest, decision=decision, attempt=100, dry_run=dry_run).message().message_id
        assert len(message_id) <= 128


def test_the_body_is_compact_ascii_json_that_keeps_any_text() -> None:
    body = outcome(requested_by="Zoë \ud800").message().body
    assert body.isascii()
    assert json.loads(body)["requestedBy"] == "Zoë \ud800"
    assert b": " not in body
    assert b": " not in body
