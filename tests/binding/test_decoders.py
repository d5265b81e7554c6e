"""The product reads the same command from both decoders of the same host-format bytes.

``shared.settlement.received`` and the processor run on what the installed package (1.0.0b2, uamqp)
decodes and on what ``ServiceBusReceivedMessage.from_bytes`` (pyamqp, the package's newer decoding)
decodes; the decision, the settlement and the published outcome must be the same.
"""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage

from local.binding import decode_from_bytes, decode_with_package
from shared.processor import Processor
from shared.settlement import received
from tests.binding.conftest import receive, send
from tests.unit.helpers import NOW, FakeBatch, FakeBus, make_settings

COMMAND = {"action": "terminateTask", "jobId": "job-1", "taskId": "task-1"}


def run(message: Any) -> tuple[Any, list[dict[str, Any]], list[str]]:
    bus, batch = FakeBus(), FakeBatch()
    processor = Processor(make_settings(), batch, bus, clock=lambda: NOW, rng=random.Random(7))
    result = processor.process(received(message))
    return result.settlement, bus.events(), [str(command) for command in batch.executed]


def with_command_id(**extra: Any) -> bytes:
    return json.dumps({**COMMAND, **extra}).encode()


MESSAGES: list[tuple[str, ServiceBusMessage | AmqpAnnotatedMessage]] = [
    ("str id", ServiceBusMessage(json.dumps(COMMAND).encode(), message_id="cmd-1")),
    ("ulong id", ServiceBusMessage(json.dumps(COMMAND).encode(), message_id=424242)),  # type: ignore[arg-type]
    ("uuid id", ServiceBusMessage(json.dumps(COMMAND).encode(), message_id=uuid.UUID(int=99))),  # type: ignore[arg-type]
    ("binary id", ServiceBusMessage(json.dumps(COMMAND).encode(), message_id=b"\x01\xab")),  # type: ignore[arg-type]
    ("long id", ServiceBusMessage(json.dumps(COMMAND).encode(), message_id="m" * 128)),
    (
        "attempt",
        ServiceBusMessage(
            with_command_id(commandId="c-attempt"), message_id="c-attempt#3", application_properties={"attempt": 3}
        ),
    ),
    ("attempt text", ServiceBusMessage(with_command_id(commandId="c-t"), application_properties={"attempt": "2"})),
    (
        "two data sections",
        AmqpAnnotatedMessage(data_body=[b'{"action": "terminateTask", ', b'"jobId": "j", "taskId": "t"}']),
    ),
    ("value body", AmqpAnnotatedMessage(value_body=COMMAND, properties={"message_id": "value"})),
    ("not json", ServiceBusMessage(b"\xff\xfe", message_id="not-json")),
    ("no id", ServiceBusMessage(json.dumps(COMMAND).encode())),
]


@pytest.fixture(scope="module")
def contents(client: ServiceBusClient) -> dict[str, bytes]:
    send(client, "decoders", *(message for _, message in MESSAGES))
    got = receive(client, "decoders", len(MESSAGES))
    return {name: item.content for (name, _), item in zip(MESSAGES, got, strict=True)}


@pytest.mark.parametrize("name", [name for name, _ in MESSAGES])
def test_both_decoders_lead_to_the_same_decision_settlement_and_outcome(contents: dict[str, bytes], name: str) -> None:
    package = run(decode_with_package(contents[name]))
    from_bytes = run(decode_from_bytes(contents[name]))
    assert package == from_bytes


def test_ids_of_other_amqp_types_are_command_ids_in_azure(contents: dict[str, bytes]) -> None:
    """The .NET host turns every message-id into a string, so such ids are usable command ids."""
    for name, command_id in (("ulong id", "424242"), ("uuid id", "00000000-0000-0000-0000-000000000063")):
        _, events, executed = run(decode_with_package(contents[name]))
        assert [event["commandId"] for event in events] == [command_id]
        assert len(executed) == 1
    _, events, executed = run(decode_with_package(contents["long id"]))
    assert events[0]["commandId"].startswith("invalid:") and executed == []


def test_a_sequence_body_is_refused_by_both_decoders_for_different_reasons(client: ServiceBusClient) -> None:
    send(client, "decoders", AmqpAnnotatedMessage(sequence_body=[[1]], properties={"message_id": "seq"}))
    (got,) = receive(client, "decoders", 1)
    (package_settlement, package_events, _) = run(decode_with_package(got.content))
    (bytes_settlement, bytes_events, _) = run(decode_from_bytes(got.content))
    assert package_settlement.reason == bytes_settlement.reason == "InvalidCommand"
    # 1.0.0b2 cannot read the sequence at all (no body); from_bytes yields its lists.
    assert "NoneType" in package_events[0]["detail"] and "generator" in bytes_events[0]["detail"]
