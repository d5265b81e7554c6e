"""Hostile input and lost settlements: every message ends in one invocation, with one terminal outcome.

Each test here is a regression for a path that once looped a message to MaxDeliveryCountExceeded,
called Batch for an invalid message, or gave a command two terminal outcomes (docs/design.md,
"Guarantees"). The in-memory bus stands in for our own ``Bus`` interface; ``Topic`` adds the
duplicate detection the deployed topic has, so a scenario shows what a subscriber would receive.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

from shared.batch_client import BatchAnswer
from shared.contract import Command
from shared.messages import Outbound, Received
from shared.outcome import TERMINAL_DECISIONS
from shared.processor import Processor, Result
from tests.unit.helpers import NOW, FakeBatch, FakeBus, answer, make_settings

VALID: Final = {"action": "terminateTask", "jobId": "job-1", "taskId": "task-1"}


def process(
    body: object, message_id: object = "msg-1", properties: dict[Any, Any] | None = None, **settings: str
) -> tuple[Result, FakeBatch, FakeBus]:
    batch, bus = FakeBatch(), FakeBus()
    processor = Processor(make_settings(**settings), batch, bus, clock=lambda: NOW, rng=random.Random(1))
    return processor.process(Received.read(body, message_id, properties)), batch, bus


def encoded(data: dict[str, Any]) -> bytes:
    return json.dumps(data).encode()


def assert_invalid(result: Result, batch: FakeBatch, bus: FakeBus, fragment: str) -> dict[str, Any]:
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "InvalidCommand")
    assert fragment in (result.settlement.description or "")
    assert batch.calls == 0
    (event,) = bus.events()
    assert event["deadLetterReason"] == "InvalidCommand"
    assert len(bus.published[0].message_id) <= 128
    return event


# ---------------------------------------------------------------- hostile bodies


def test_a_number_with_thousands_of_digits_is_an_invalid_command() -> None:
    body = b'{"action": "terminateTask", "jobId": "j", "taskId": "t", "limit": ' + b"9" * 5000 + b"}"
    assert_invalid(*process(body), fragment="number too long")


@pytest.mark.parametrize(
    "since",
    [
        "Sun, 06 Nov 99999999999999999999 08:49:37 GMT",
        "Sun, 06 Nov 1994 08:49:37 +99999999999999999999",
        "9999-12-31T23:59:59-23:59",
        "0001-01-01T00:00:00+23:59",
        "+999999999-01-01T00:00:00Z",
    ],
)
def test_an_absurd_if_unmodified_since_is_an_invalid_command(since: str) -> None:
    assert_invalid(*process(encoded({**VALID, "ifUnmodifiedSince": since})), fragment="ifUnmodifiedSince")


@pytest.mark.parametrize("name", ["requestedBy", "reason", "jobId", "commandId", "account"])
def test_a_lone_surrogate_in_any_string_is_refused_before_batch(name: str) -> None:
    fields = {"action": "terminateJob", "jobId": "job-1", name: "x\ud800"}
    event = assert_invalid(*process(json.dumps(fields).encode()), fragment=f"{name} is not valid Unicode text")
    assert json.dumps(event).isascii()


def test_a_lone_surrogate_in_an_unknown_field_name_still_encodes() -> None:
    result, batch, bus = process(b'{"action": "terminateTask", "jobId": "j", "taskId": "t", "\\ud800": 1}')
    event = assert_invalid(result, batch, bus, fragment="unknown fields")
    assert "\\ud800" in event["detail"]


def test_a_body_generator_that_fails_is_an_invalid_command() -> None:
    def sections() -> Any:
        yield b"{"
        raise OSError("section could not be decoded")

    assert_invalid(*process(sections()), fragment="body cannot be read (OSError)")


# ---------------------------------------------------------------- hostile ids and properties


@pytest.mark.parametrize("message_id", [12345, uuid.UUID(int=7), b"bytes-id", "m" * 101, "m" * 128, "has space", ""])
def test_an_unusable_message_id_is_not_reused_and_asks_for_a_command_id(message_id: object) -> None:
    result, batch, bus = process(encoded(VALID), message_id=message_id)
    event = assert_invalid(result, batch, bus, fragment="add a commandId field")
    assert event["commandId"].startswith("invalid:")


@pytest.mark.parametrize("message_id", [12345, uuid.UUID(int=7), "m" * 128])
def test_an_unusable_message_id_does_not_matter_when_the_body_has_a_command_id(message_id: object) -> None:
    result, batch, _ = process(encoded({**VALID, "commandId": "cmd-1"}), message_id=message_id)
    assert result.settlement.kind == "complete"
    assert [c.command_id for c in batch.executed] == ["cmd-1"]


def test_invalid_messages_without_message_id_get_distinct_ids_by_content() -> None:
    ids = {process(body, message_id=None)[0].outcome.command_id for body in (b"one", b"two", iter([b"one"]))}
    assert len(ids) == 2  # b"one" as bytes or as a data-section generator is the same message


def test_an_unreadable_body_gets_its_id_from_what_can_be_seen() -> None:
    first = process({"amqp": "value"}, message_id=None)[0].outcome.command_id
    second = process({"amqp": "other"}, message_id=None)[0].outcome.command_id
    assert first != second


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(10**12, 8), ("9" * 130, 8), (-3, 1), ("abc", 1), (0, 1), (3, 3), (b"4", 4), (True, 1)],
)
def test_the_attempt_property_is_clamped_to_the_retry_range(attempt: object, expected: int) -> None:
    result, batch, _ = process(encoded({**VALID, "commandId": "c"}), properties={b"attempt": attempt})
    assert result.outcome.attempt == expected
    assert len(batch.executed) == 1


def test_a_huge_attempt_ends_in_retries_exhausted_after_one_batch_call() -> None:
    batch, bus = FakeBatch(answer(503, "ServerBusy")), FakeBus()
    processor = Processor(make_settings(), batch, bus, clock=lambda: NOW)
    result = processor.process(Received.read(encoded({**VALID, "commandId": "c"}), "m", {"attempt": "9" * 130}))
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "RetriesExhausted")
    assert len(batch.executed) == 1
    assert bus.scheduled == []


@pytest.mark.parametrize("properties", [{b"\xff": b"\xfe"}, {1: object()}, "not a mapping", {"attempt": 10**5000}])
def test_odd_application_properties_never_stop_a_valid_command(properties: Any) -> None:
    result, batch, _ = process(encoded({**VALID, "commandId": "c"}), properties=properties)
    assert result.settlement.kind == "complete"
    assert len(batch.executed) == 1


# ---------------------------------------------------------------- outcome fields


def test_an_invalid_outcome_keeps_every_field_that_parsed() -> None:
    body = {**VALID, "commandId": "cmd-9", "requestedBy": "ops", "dryRun": True, "force": "yes"}
    event = assert_invalid(*process(encoded(body)), fragment="force")
    assert {k: event[k] for k in ("commandId", "action", "jobId", "taskId", "account", "requestedBy", "dryRun")} == {
        "commandId": "cmd-9",
        "action": "terminateTask",
        "jobId": "job-1",
        "taskId": "task-1",
        "account": "prod",
        "requestedBy": "ops",
        "dryRun": True,
    }


def test_a_dry_run_that_predicts_a_dead_letter_is_marked_for_filters() -> None:
    batch, bus = FakeBatch(job_answer=answer(404, "JobNotFound")), FakeBus()
    processor = Processor(make_settings(), batch, bus, clock=lambda: NOW)
    processor.process(Received.read(encoded({**VALID, "commandId": "c", "dryRun": True}), "m"))
    (message,) = bus.published
    assert message.application_properties["decision"] == "deadLetter"
    assert message.application_properties["dryRun"] is True
    assert message.message_id == "c#dryRun"


# ---------------------------------------------------------------- our own defects never loop a message


class ExplodingBatch(FakeBatch):
    def execute(self, command: Command) -> BatchAnswer:
        self.executed.append(command)
        raise KeyError("a defect in our Batch code")


def test_a_defect_while_calling_batch_is_retried_like_an_unreadable_answer() -> None:
    batch, bus = ExplodingBatch(), FakeBus()
    result = Processor(make_settings(), batch, bus, clock=lambda: NOW).process(
        Received.read(encoded({**VALID, "commandId": "c"}), "m")
    )
    assert result.settlement.kind == "complete"
    assert [event["decision"] for event in bus.events()] == ["retry"]
    assert len(bus.scheduled) == 1


def test_a_defect_after_deciding_dead_letters_processing_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    processor = Processor(make_settings(), FakeBatch(), FakeBus(), clock=lambda: NOW)

    def broken(*_: Any, **__: Any) -> Result:
        raise RuntimeError("defect")

    monkeypatch.setattr(processor, "_finish", broken)
    result = processor.process(Received.read(encoded({**VALID, "commandId": "c"}), "m"))
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "ProcessingFailed")
    assert "RuntimeError" in (result.settlement.description or "")
    (event,) = processor._bus.events()  # type: ignore[attr-defined]
    assert (event["commandId"], event["deadLetterReason"]) == ("m", "ProcessingFailed")


def test_a_dry_run_retry_copy_never_shares_an_id_with_the_real_runs_copy() -> None:
    batch, bus = FakeBatch(job_answer=answer(503, "ServerBusy")), FakeBus()
    Processor(make_settings(), batch, bus, clock=lambda: NOW).process(
        Received.read(encoded({**VALID, "commandId": "c", "dryRun": True}), "m")
    )
    assert [copy.message_id for copy in bus.scheduled] == ["c#dryRun#2"]


# ---------------------------------------------------------------- exactly one terminal outcome


@dataclass
class Topic(FakeBus):
    """Our Bus with the deployed entities' duplicate detection: a repeated message id is dropped."""

    seen: set[str] = field(default_factory=set)
    delivered: list[dict[str, Any]] = field(default_factory=list)
    queue_ids: set[str] = field(default_factory=set)

    def publish(self, message: Outbound) -> None:
        super().publish(message)
        if message.message_id not in self.seen:
            self.seen.add(message.message_id)
            self.delivered.append(json.loads(message.body))

    def schedule(self, message: Outbound) -> None:
        if message.message_id in self.queue_ids:
            return
        super().schedule(message)
        self.queue_ids.add(message.message_id)

    def terminals(self) -> list[str]:
        return [event["decision"] for event in self.delivered if event["decision"] in TERMINAL_DECISIONS]


def deliver(processor: Processor, message: Outbound | bytes, attempt: int = 1) -> Result:
    if isinstance(message, Outbound):
        return processor.process(Received.read(message.body, message.message_id, message.application_properties))
    return processor.process(Received.read(message, "cmd-1", {"attempt": attempt}))


def test_a_lost_settlement_then_a_transient_error_gives_one_terminal_outcome() -> None:
    topic, batch = Topic(), FakeBatch(answer(204))
    processor = Processor(make_settings(), batch, topic, clock=lambda: NOW)
    body = encoded(VALID)
    assert deliver(processor, body).outcome.decision == "succeeded"  # ... and its settlement is lost
    batch.execute_answer = answer(503, "ServerBusy")
    assert deliver(processor, body).outcome.decision == "retry"  # the redelivery
    batch.execute_answer = answer(409, "TaskCompleted")
    (copy,) = topic.scheduled
    assert deliver(processor, copy).outcome.decision == "alreadyDone"  # the retry copy
    assert topic.terminals() == ["succeeded"]


def test_a_failed_publish_after_scheduling_then_a_redelivery_gives_one_terminal_outcome() -> None:
    topic, batch = Topic(), FakeBatch(answer(503, "ServerBusy"))
    processor = Processor(make_settings(), batch, topic, clock=lambda: NOW)
    body = encoded(VALID)
    topic.fail_publish = True
    assert deliver(processor, body).settlement.kind == "abandon"  # copy scheduled, outcome not published
    topic.fail_publish = False
    batch.execute_answer = answer(409, "TaskCompleted")
    assert deliver(processor, body).outcome.decision == "alreadyDone"  # the redelivery
    (copy,) = topic.scheduled
    assert deliver(processor, copy).outcome.decision == "alreadyDone"  # the copy nobody cancelled
    assert topic.terminals() == ["alreadyDone"]


def test_a_redelivered_retry_schedules_no_second_copy() -> None:
    topic, batch = Topic(), FakeBatch(answer(503, "ServerBusy"))
    processor = Processor(make_settings(), batch, topic, clock=lambda: NOW)
    deliver(processor, encoded(VALID))
    deliver(processor, encoded(VALID))  # settlement lost, same attempt again
    assert [m.message_id for m in topic.scheduled] == ["cmd-1#2"]


def test_a_resend_under_a_new_message_id_reaches_batch_again_but_adds_no_terminal_outcome() -> None:
    topic, batch = Topic(), FakeBatch(answer(204))
    processor = Processor(make_settings(), batch, topic, clock=lambda: NOW)
    body = encoded({**VALID, "commandId": "order-42"})
    processor.process(Received.read(body, "first-send"))
    batch.execute_answer = answer(409, "TaskCompleted")
    processor.process(Received.read(body, "second-send"))
    assert len(batch.executed) == 2
    assert topic.terminals() == ["succeeded"]


def test_an_invalid_message_delivered_twice_has_one_terminal_outcome() -> None:
    topic = Topic()
    processor = Processor(make_settings(), FakeBatch(), topic, clock=lambda: NOW)
    for _ in range(2):
        processor.process(Received.read(b"not json", None))
    assert topic.terminals() == ["deadLetter"]


# ---------------------------------------------------------------- redrives and trace context

TRACEPARENT: Final = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_a_redriven_command_gets_ids_of_its_own_so_duplicate_detection_keeps_it() -> None:
    topic, batch = Topic(), FakeBatch(answer(503, "ServerBusy"))
    processor = Processor(make_settings(), batch, topic, clock=lambda: NOW)
    body = encoded({**VALID, "commandId": "cmd-7"})
    processor.process(Received.read(body, "cmd-7"))  # the first run: retry copy cmd-7#2
    batch.execute_answer = answer(503, "ServerBusy")
    processor.process(Received.read(body, "cmd-7#redrive-1", {"redrive": 1}))  # a redrive, same window
    assert [m.message_id for m in topic.scheduled] == ["cmd-7#2", "cmd-7#r1#2"]
    assert topic.scheduled[1].application_properties["redrive"] == 1
    batch.execute_answer = answer(204)
    processor.process(Received.read(body, "cmd-7#redrive-2", {"redrive": "2"}))
    assert topic.published[-1].message_id == "cmd-7#r2"
    assert topic.terminals() == ["succeeded"]


@pytest.mark.parametrize("generation", ["-1", "abc", "1000", "9" * 50])
def test_an_unreadable_redrive_generation_counts_as_the_original_run(generation: str) -> None:
    result, _, bus = process(encoded({**VALID, "commandId": "c"}), properties={"redrive": generation})
    assert result.settlement.kind == "complete"
    assert bus.published[0].message_id == "c"


def test_the_senders_trace_context_is_carried_onto_the_outcome_and_the_retry_copy() -> None:
    batch, bus = FakeBatch(answer(503, "ServerBusy")), FakeBus()
    processor = Processor(make_settings(), batch, bus, clock=lambda: NOW)
    result = processor.process(Received.read(encoded({**VALID, "commandId": "c"}), "m", {b"traceparent": TRACEPARENT}))
    for message in (*bus.published, *bus.scheduled):
        assert str(message.application_properties["traceparent"]).split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
        assert message.application_properties["Diagnostic-Id"] == message.application_properties["traceparent"]
    assert result.log_fields["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736"


def test_a_message_without_trace_context_sends_none() -> None:
    _, _, bus = process(encoded({**VALID, "commandId": "c"}))
    assert "traceparent" not in bus.published[0].application_properties
