"""A selector page through the processor (shared/processor.py, shared/fanout.py) with in-memory stand-ins of the
project's BatchApi and Bus: the order of work, the ids, retries and failures after the listing.

docs/design.md, "Fleet operations": list one page -> enqueue the previous page's targets -> enqueue the next
page's message -> publish the fanOut outcome -> settle; anything failing after the listing abandons.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

import pytest

import schemas
from shared.contract import Command, child_id
from shared.messages import Outbound, Received
from shared.processor import Processor, Result
from tests.unit.helpers import NOW, FakeBatch, SchemaValidator, answer, make_settings

OUTCOME: Final = SchemaValidator(schemas.OUTCOME)
NEXT: Final = "https://prod.westeurope.batch.azure.com/jobs/render-1/tasks?api-version=2025-06-01&$skiptoken=x"


@dataclass
class OrderedBus:
    """The Bus protocol, recording every call in order; ``fail`` names a call kind that raises once."""

    calls: list[tuple[str, list[str]]] = field(default_factory=list)
    sent: list[Outbound] = field(default_factory=list)
    fail: str | None = None

    def _record(self, kind: str, messages: list[Outbound]) -> None:
        if self.fail == kind:
            self.fail = None
            raise ConnectionError(f"{kind} failed")
        self.calls.append((kind, [m.message_id for m in messages]))
        self.sent.extend(messages)

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        batch = list(messages)
        self._record("enqueue", batch)
        return len(batch)

    def schedule(self, message: Outbound) -> None:
        self._record("schedule", [message])

    def publish(self, message: Outbound) -> None:
        self._record("publish", [message])


def listing(*task_ids: str, next_link: str | None = NEXT) -> Any:
    body: dict[str, Any] = {"value": [{"id": t, "state": "completed"} for t in task_ids]}
    if next_link:
        body["odata.nextLink"] = next_link
    return answer(200, body=body)


def run(body: dict[str, Any], batch: FakeBatch, bus: OrderedBus, attempt: int = 1, message_id: str = "sel") -> Result:
    settings = make_settings(FLEET_SCOPE_PREFIXES="render-", RETRY_MAX_ATTEMPTS="3")
    processor = Processor(settings, batch, bus, clock=lambda: NOW, rng=random.Random(3))
    return processor.process(Received.read(json.dumps(body).encode(), message_id, {"attempt": attempt}))


SELECTOR: Final = {"action": "deleteTask", "jobId": "render-1", "select": {"state": "completed"}, "commandId": "sel"}


def page_two(pending: list[str]) -> dict[str, Any]:
    continuation = {
        "page": 2,
        "next": NEXT,
        "asOf": "2026-11-24T04:00:00Z",
        "remaining": 998,
        "listed": 2,
        "matched": 2,
        "selected": 2,
        "enqueued": 0,
        "pending": pending,
    }
    return {**SELECTOR, "continuation": continuation}


def test_page_one_carries_its_targets_to_the_next_page_and_reports_expanding() -> None:
    bus = OrderedBus()
    result = run(SELECTOR, FakeBatch(list_answer=listing("t1", "t2")), bus)
    assert result.settlement.kind == "complete"
    assert [kind for kind, _ in bus.calls] == ["enqueue", "publish"]
    assert bus.calls == [("enqueue", ["sel#p2"]), ("publish", ["sel#p1"])]
    continuation = json.loads(bus.sent[0].body)["continuation"]
    assert (continuation["pending"], continuation["next"], continuation["remaining"]) == (["t1", "t2"], NEXT, 998)
    event = json.loads(bus.sent[1].body)
    assert (event["decision"], event["fanOut"]["selected"], event["fanOut"]["more"]) == ("expanding", 2, True)
    assert OUTCOME.is_valid(event), OUTCOME.errors(event)


def test_a_later_page_enqueues_the_previous_targets_then_the_next_page_then_reports() -> None:
    bus = OrderedBus()
    run(page_two(["t1", "t2"]), FakeBatch(list_answer=listing("t3")), bus, message_id="sel#p2")
    assert bus.calls == [
        ("enqueue", ["sel/render-1/t1", "sel/render-1/t2"]),
        ("enqueue", ["sel#p3"]),
        ("publish", ["sel#p2"]),
    ]
    child = json.loads(bus.sent[0].body)
    assert child == {
        "action": "deleteTask",
        "jobId": "render-1",
        "account": "prod",
        "taskId": "t1",
        "commandId": "sel/render-1/t1",
        "requestedBy": "selector:sel",
    }


@pytest.mark.parametrize("command_id", ["sel", 'q"uo\\te', "x" * 60, "y" * 100])
def test_every_task_command_is_the_one_command_to_message_makes(command_id: str) -> None:
    """The page's template (fanout._task_commands) against Command.to_message, for every task: a commandId
    that JSON must escape, and ids that cross from readable to digest child ids within one page."""
    pending = ["t1", "a" * 30, "b" * 39, "c" * 40, "d" * 64, "e-_9"]
    bus = OrderedBus()
    run({**page_two(pending), "commandId": command_id}, FakeBatch(list_answer=listing()), bus, message_id="m#p2")
    children = bus.sent[: len(pending)]
    expected = [
        Command(
            "deleteTask",
            "render-1",
            task,
            "prod",
            child_id(command_id, "render-1", task),
            requested_by=f"selector:{command_id}",
        ).to_message()
        for task in pending
    ]
    assert children == expected
    assert len({json.loads(m.body)["commandId"] for m in children}) == len(pending)


def test_the_last_page_without_targets_ends_the_selector_in_place() -> None:
    bus = OrderedBus()
    run(page_two([]), FakeBatch(list_answer=listing(next_link=None)), bus, message_id="sel#p2")
    assert bus.calls == [("publish", ["sel"])]
    event = json.loads(bus.sent[0].body)
    assert (event["decision"], event["fanOut"]["more"], event["fanOut"]["totalSelected"]) == ("succeeded", False, 2)


@pytest.mark.parametrize("kind", ["enqueue", "publish"])
def test_a_failure_after_the_listing_abandons_the_page(kind: str) -> None:
    bus = OrderedBus(fail=kind)
    result = run(page_two(["t1"]), FakeBatch(list_answer=listing("t3")), bus, message_id="sel#p2")
    assert result.settlement.kind == "abandon"
    assert ("publish", ["sel#p2"]) not in bus.calls


def test_a_throttled_listing_schedules_a_retry_copy_of_the_same_page() -> None:
    bus = OrderedBus()
    batch = FakeBatch(list_answer=answer(429, "TooManyRequests", retry_after=2.0))
    result = run(page_two(["t1"]), batch, bus, message_id="sel#p2")
    assert result.settlement.kind == "complete"
    assert [kind for kind, _ in bus.calls] == ["enqueue", "schedule", "publish"]  # the pending targets go anyway
    copy = bus.sent[1]
    assert (copy.message_id, copy.application_properties["attempt"]) == ("sel#p2#2", 2)
    assert json.loads(copy.body)["continuation"]["pending"] == ["t1"]
    assert copy.scheduled_enqueue_time is not None and (copy.scheduled_enqueue_time - NOW).total_seconds() >= 2
    event = json.loads(bus.sent[2].body)
    assert (bus.sent[2].message_id, event["decision"], event["httpStatus"]) == ("sel#p2#1", "retry", 429)
    assert OUTCOME.is_valid(event), OUTCOME.errors(event)


def test_a_listing_refused_for_authentication_gives_up_after_two_attempts() -> None:
    bus = OrderedBus()
    result = run(SELECTOR, FakeBatch(list_answer=answer(401, "AuthenticationFailed")), bus, attempt=2)
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "AuthenticationFailed")
    event = json.loads(bus.sent[-1].body)
    assert (bus.sent[-1].message_id, event["decision"], event["deadLetterReason"]) == (
        "sel",
        "deadLetter",
        "AuthenticationFailed",
    )


def test_a_listing_that_keeps_failing_ends_retries_exhausted() -> None:
    bus = OrderedBus()
    result = run(SELECTOR, FakeBatch(list_answer=answer(503, "ServerBusy")), bus, attempt=3)
    assert (result.settlement.kind, result.settlement.reason) == ("deadletter", "RetriesExhausted")
    assert "gave up after 3 attempts" in (result.settlement.description or "")


def test_a_dry_run_page_has_ids_of_its_own_and_no_pending_targets() -> None:
    bus = OrderedBus()
    run({**SELECTOR, "dryRun": True}, FakeBatch(list_answer=listing("t1", "t2")), bus)
    assert bus.calls == [("enqueue", ["sel#dryRun#p2"]), ("publish", ["sel#dryRun#p1"])]
    continuation = json.loads(bus.sent[0].body)["continuation"]
    assert "pending" not in continuation and continuation["firstTargets"] == ["render-1/t1", "render-1/t2"]


def test_an_unreadable_listing_is_retried() -> None:
    bus = OrderedBus()
    run(SELECTOR, FakeBatch(list_answer=answer(200, body={"value": "not a list"})), bus)
    assert [kind for kind, _ in bus.calls] == ["schedule", "publish"]
    assert json.loads(bus.sent[-1].body)["decision"] == "retry"
