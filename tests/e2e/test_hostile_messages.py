"""Hostile messages sent with the real SDK end in one invocation: an outcome and a dead-letter, no Batch call.

Regressions for messages that once looped to MaxDeliveryCountExceeded (docs/design.md, "Guarantees"):
ids of other AMQP types, over-long ids, an ``attempt`` property of 130 digits, a number of thousands of
digits, an unpaired surrogate, an AMQP value body. The make chaos suite sends a thousand generated ones.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage

from emulators.batch import BatchEmulator
from local.host import LocalHost
from tests.e2e.conftest import Outcomes, dead_letters

pytestmark = pytest.mark.slow


def emulator(host: LocalHost) -> BatchEmulator:
    assert host.batch is not None
    return host.batch


def send_raw(client: ServiceBusClient, *messages: ServiceBusMessage | AmqpAnnotatedMessage) -> None:
    with client.get_queue_sender("batch-commands") as sender:
        for message in messages:
            sender.send_messages(message)


def wait_invalid(outcomes: Outcomes, count: int, marker: str, timeout: float = 30) -> list[dict[str, object]]:
    """The InvalidCommand outcomes whose detail mentions ``marker``, once there are ``count`` of them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with outcomes._lock:
            found = [
                e
                for e in outcomes.events.values()
                if e.get("deadLetterReason") == "InvalidCommand" and marker in str(e.get("detail"))
            ]
        if len(found) >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"expected {count} InvalidCommand outcomes about {marker!r}, got {len(found)}")


def test_message_ids_of_other_amqp_types_arrive_as_text_and_over_long_ids_are_refused(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    """The Functions host turns every AMQP message id into text (as .NET's converter does): an integer
    or a UUID then stands in for the commandId like any string id; 128 characters never does."""
    body = json.dumps({"action": "terminateJob", "jobId": "hostile-ids"}).encode()
    calls = emulator(host).request_count
    send_raw(sb_client, ServiceBusMessage(body, message_id="m" * 128))
    (refused,) = wait_invalid(outcomes, 1, "add a commandId field")
    assert str(refused["commandId"]).startswith("invalid:")
    assert (refused["action"], refused["jobId"]) == ("terminateJob", "hostile-ids")
    assert emulator(host).request_count == calls
    send_raw(
        sb_client,
        ServiceBusMessage(body, message_id=424242),  # type: ignore[arg-type]
        ServiceBusMessage(body, message_id=uuid.UUID(int=99)),  # type: ignore[arg-type]
    )
    for text_id in ("424242", "00000000-0000-0000-0000-000000000063"):
        assert outcomes.wait(text_id, "deadLetter")["deadLetterReason"] == "JobNotFound"


def test_hostile_bodies_are_dead_lettered_invalid_command_with_a_description(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    calls = emulator(host).request_count
    digits = b'{"action": "terminateJob", "jobId": "j", "x": ' + b"7" * 5000 + b"}"
    surrogate = b'{"action": "terminateJob", "jobId": "j", "requestedBy": "\\ud800"}'
    bad_date = b'{"action": "terminateJob", "jobId": "j", "ifUnmodifiedSince": "Sun, 06 Nov 99999999999 08:49:37 GMT"}'
    send_raw(
        sb_client,
        ServiceBusMessage(digits, message_id="hostile-digits"),
        ServiceBusMessage(surrogate, message_id="hostile-surrogate"),
        ServiceBusMessage(bad_date, message_id="hostile-date"),
        AmqpAnnotatedMessage(value_body={"action": "terminateJob"}, properties={"message_id": "hostile-value"}),
    )
    ids = {"hostile-digits", "hostile-surrogate", "hostile-date", "hostile-value"}
    found = dead_letters(sb_client, ids)
    for message_id in ids:
        letter = found[message_id]
        assert letter.dead_letter_reason == "InvalidCommand"
        assert letter.dead_letter_error_description and letter.dead_letter_error_description.isprintable()
        assert outcomes.wait(message_id, "deadLetter")["deadLetterReason"] == "InvalidCommand"
    assert "number too long" in str(found["hostile-digits"].dead_letter_error_description)
    assert "unpaired surrogate" in str(found["hostile-surrogate"].dead_letter_error_description)
    assert "ifUnmodifiedSince" in str(found["hostile-date"].dead_letter_error_description)
    assert emulator(host).request_count == calls


def test_an_attempt_property_of_130_digits_counts_as_the_last_attempt(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    emulator(host).seed_job("hostile-attempt")
    emulator(host).seed_task("hostile-attempt", "t1", state="running")
    body = json.dumps({"action": "terminateTask", "jobId": "hostile-attempt", "taskId": "t1", "commandId": "h-att"})
    send_raw(sb_client, ServiceBusMessage(body, message_id="h-att", application_properties={"attempt": "9" * 130}))
    event = outcomes.wait("h-att", "succeeded")
    assert event["attempt"] == 8  # RETRY_MAX_ATTEMPTS: trusted no further than the retry range
