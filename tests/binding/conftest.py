"""A peer with short-lock queues, and helpers to drive a test function through the local binding path."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azure.servicebus.amqp import AmqpAnnotatedMessage

from emulators.servicebus import ServiceBusPeer
from local.binding import binding_content, delivery_tag_of, install_wire_capture, wire_of
from local.functions import IndexedFunction
from local.queue_driver import QueueDriver


def queue(name: str, **properties: Any) -> dict[str, Any]:
    return {"Name": name, "Properties": {"LockDuration": "PT30S", "MaxDeliveryCount": 10, **properties}}


CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "sbemulatorns",
                "Queues": [
                    queue("fields"),
                    queue("decoders"),
                    queue("peer-tokens"),
                    queue("types"),
                    queue("settle"),
                    queue("twice"),
                    queue("late", LockDuration="PT2S"),
                    queue("refused", LockDuration="PT1S"),
                    queue("raises"),
                    queue("unsettled", LockDuration="PT2S"),
                    queue("renewed", LockDuration="PT2S"),
                    queue("unbindable", MaxDeliveryCount=2),
                ],
                "Topics": [],
            }
        ]
    }
}


@pytest.fixture(scope="session")
def peer() -> Iterator[ServiceBusPeer]:
    install_wire_capture()
    with ServiceBusPeer(CONFIG, port=0) as running:
        yield running
        assert running.errors == []


@pytest.fixture(scope="session")
def client(peer: ServiceBusPeer) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(peer.connection_string) as sb:
        yield sb


def send(client: ServiceBusClient, queue_name: str, *messages: ServiceBusMessage | AmqpAnnotatedMessage) -> None:
    with client.get_queue_sender(queue_name) as sender:
        for message in messages:
            sender.send_messages(message)


@dataclass(frozen=True)
class Got:
    """A received message and what the host reads from it, taken before the message was completed."""

    message: ServiceBusReceivedMessage
    lock_token: uuid.UUID
    delivery_count: int
    sequence_number: int
    wire: bytes
    tag: bytes

    @property
    def content(self) -> bytes:
        return binding_content(self.wire, self.tag)


def receive(client: ServiceBusClient, queue_name: str, count: int, timeout: float = 10) -> list[Got]:
    """Receive ``count`` messages with a plain peek-lock receiver, in order, and complete them."""
    found: list[Got] = []
    deadline = time.monotonic() + timeout
    with client.get_queue_receiver(queue_name) as receiver:
        while len(found) < count and time.monotonic() < deadline:
            for message in receiver.receive_messages(max_message_count=count - len(found), max_wait_time=1):
                assert message.lock_token is not None and message.delivery_count is not None
                got = Got(
                    message,
                    uuid.UUID(str(message.lock_token)),
                    message.delivery_count,
                    message.sequence_number or 0,
                    wire_of(message),
                    delivery_tag_of(message),
                )
                receiver.complete_message(message)
                found.append(got)
    assert len(found) == count, f"received {len(found)} of {count}"
    return sorted(found, key=lambda got: got.sequence_number)


def indexed(call: Callable[..., Any], name: str = "test_function") -> IndexedFunction:
    return IndexedFunction(name, {"type": "serviceBusTrigger", "name": "message", "queueName": "q"}, call)


class Calls:
    """What the test function saw, one entry per invocation; waits for a number of them."""

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []
        self._changed = threading.Condition()

    def add(self, **item: Any) -> None:
        with self._changed:
            self.items.append({"at": time.monotonic(), **item})
            self._changed.notify_all()

    def wait(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.items) >= count, timeout):
                raise AssertionError(f"{len(self.items)} of {count} invocations: {self.items}")
            return list(self.items)


@pytest.fixture
def drive(peer: ServiceBusPeer) -> Iterator[Callable[..., QueueDriver]]:
    """Start a QueueDriver for a test function on a queue of the test peer; stopped after the test."""
    started: list[QueueDriver] = []

    def start(call: Callable[..., Any], queue_name: str, **options: Any) -> QueueDriver:
        driver = QueueDriver(
            indexed(call), peer.connection_string, queue_name, options.pop("concurrency", 4), **options
        )
        driver.start()
        started.append(driver)
        return driver

    yield start
    for driver in started:
        driver.stop()
