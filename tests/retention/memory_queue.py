"""The producers' Service Bus side in memory: an implementation of ``ServiceBusGateway``'s interface.

The real SDK path (``ServiceBusGateway`` over AMQP) is tested end to end elsewhere; these stand-ins let
the retention and alert suites see exactly which messages would reach the queue and the topic.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable, Mapping

from shared.contract import Command, parse_command
from shared.messages import Outbound
from shared.runtime import Runtime
from shared.servicebus import ServiceBusGateway


class MemoryQueue(ServiceBusGateway):
    """The command queue with duplicate detection on (as the product's queue has) plus the outcome topic.

    A message whose ``message_id`` was accepted before is dropped silently, as Service Bus does inside
    its duplicate-detection window. ``offered`` counts every message sent, ``queued`` keeps the accepted ones.
    """

    def __init__(self, fail_enqueue: bool = False) -> None:
        # Deliberately no super().__init__(): there is no SDK client behind this gateway.
        self.queued: dict[str, Outbound] = {}
        self.offered = 0
        self.enqueue_calls = 0
        self.published: list[Outbound] = []
        self.fail_enqueue = fail_enqueue
        self._lock = threading.Lock()

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        if self.fail_enqueue:
            raise ConnectionError("queue unavailable")
        sent = 0
        with self._lock:
            self.enqueue_calls += 1
            for message in messages:
                self.offered += 1
                self.queued.setdefault(message.message_id, message)
                sent += 1
        return sent

    def publish(self, message: Outbound) -> None:
        with self._lock:
            self.published.append(message)

    def schedule(self, message: Outbound) -> None:
        raise AssertionError("command producers never schedule messages")

    def close(self) -> None:
        """Nothing to close."""

    def commands(self, accounts: Collection[str], default_account: str) -> list[Command]:
        """The queued bodies read back through the contract, as process_command would read them."""
        return [
            parse_command(message.body, message.message_id, accounts, default_account)
            for message in self.queued.values()
        ]


class CountingQueue(MemoryQueue):
    """Counts what it is sent and keeps nothing, so it adds no memory of its own to a measurement."""

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        sent = sum(1 for _ in messages)
        self.offered += sent
        self.enqueue_calls += 1
        return sent


class MemoryRuntime(Runtime):
    """The product's Runtime from a test env dict, with an in-memory queue in place of Service Bus."""

    def __init__(self, env: Mapping[str, str], queue: MemoryQueue) -> None:
        super().__init__(env)
        self.queue = queue

    def _make_bus(self) -> ServiceBusGateway:
        return self.queue
