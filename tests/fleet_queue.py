"""The command queue and outcome topic in memory, with duplicate detection, driving the real processor.

A double of the project's own ``Bus`` interface (``publish``, ``schedule``, ``enqueue``), not of Service Bus: it
keeps what the processor sends, drops a message whose ``message_id`` it accepted before (as the queue and the
topic do inside their duplicate-detection window), and ``drain`` delivers queued messages to a ``Processor``
one at a time and applies each settlement (complete, dead-letter, abandon = deliver again), the way the
Functions host does. The real SDK path runs in tests/e2e; this one lets the fan-out suites count exactly
what reached the queue and the topic, and fail a chosen send to see a redelivery.
"""

from __future__ import annotations

import json
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from shared.contract import SELECTOR_FIELDS, Command, parse_message
from shared.messages import ATTEMPT_PROPERTY, Outbound, Received
from shared.processor import Processor
from shared.runtime import Runtime
from shared.servicebus import ServiceBusGateway


class SendFailed(ConnectionError):
    """What the queue raises when a test tells it to fail a send."""


@dataclass
class FleetQueue(ServiceBusGateway):
    """Queue + topic with duplicate detection; ``fail_when`` makes chosen sends raise (a lost connection).

    It takes ``ServiceBusGateway``'s place in a ``Runtime`` (``FleetRuntime``) without its SDK client.
    """

    queue: deque[Outbound] = field(default_factory=deque)
    accepted: set[str] = field(default_factory=set)  # message ids the queue accepted (duplicate detection)
    history: list[Outbound] = field(default_factory=list)  # every accepted message, in order
    offered: int = 0
    dropped: int = 0
    topic: dict[str, Outbound] = field(default_factory=dict)  # outcome message id -> the first one published
    topic_offered: int = 0
    dead_letters: list[tuple[Outbound, str | None]] = field(default_factory=list)
    deliveries: Counter[str] = field(default_factory=Counter)
    # (kind, message) -> True to raise instead of sending; kind is "enqueue", "publish" or "schedule".
    fail_when: Callable[[str, Outbound], bool] | None = None
    # Where an abandoned message goes: the front (delivered again at once) or the back (everything queued
    # meanwhile runs first, so the redelivery meets a Batch account that changed in between).
    redeliver_last: bool = False
    _lock: threading.RLock = field(default_factory=threading.RLock)

    # --- the Bus interface --------------------------------------------------------------------------------

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        sent = 0
        for message in messages:
            self._check("enqueue", message)
            self._accept(message)
            sent += 1
        return sent

    def schedule(self, message: Outbound) -> None:
        self._check("schedule", message)
        self._accept(message)  # delivered on the next drain, whatever its time: tests do not wait for backoff

    def publish(self, message: Outbound) -> None:
        self._check("publish", message)
        with self._lock:
            self.topic_offered += 1
            self.topic.setdefault(message.message_id, message)

    def close(self) -> None:
        """Nothing to close."""

    def _check(self, kind: str, message: Outbound) -> None:
        if self.fail_when is not None and self.fail_when(kind, message):
            raise SendFailed(f"{kind} of {message.message_id} failed")

    def _accept(self, message: Outbound) -> None:
        with self._lock:
            self.offered += 1
            if message.message_id in self.accepted:
                self.dropped += 1
                return
            self.accepted.add(message.message_id)
            self.history.append(message)
            self.queue.append(message)

    # --- the host side --------------------------------------------------------------------------------------

    def send(self, body: dict[str, Any], message_id: str | None = None) -> None:
        """A producer's message (message_id = commandId unless given)."""
        raw = json.dumps(body).encode()
        self._accept(Outbound(raw, message_id or str(body["commandId"]), str(body.get("action", ""))))

    def drain(self, processor: Processor, limit: int = 1_000_000, stop: Callable[[], bool] | None = None) -> int:
        """Deliver queued messages until the queue is empty (or ``stop`` says so); return how many ran."""
        ran = 0
        while self.queue and ran < limit and not (stop is not None and stop()):
            message = self.queue.popleft()
            self.deliveries[message.message_id] += 1
            properties = {k: str(v) for k, v in message.application_properties.items()}
            result = processor.process(Received.read(message.body, message.message_id, properties))
            ran += 1
            if result.settlement.kind == "abandon":  # the lock is released: Service Bus delivers it again
                if self.redeliver_last:
                    self.queue.append(message)
                else:
                    self.queue.appendleft(message)
            elif result.settlement.kind == "deadletter":
                self.dead_letters.append((message, result.settlement.reason))
        return ran

    # --- what happened --------------------------------------------------------------------------------------

    def events(self) -> list[dict[str, Any]]:
        """Outcome events the topic kept (one per message id), in publishing order."""
        return [json.loads(message.body) for message in self.topic.values()]

    def events_of(self, command_id: str) -> list[dict[str, Any]]:
        return [event for event in self.events() if event["commandId"] == command_id]

    def terminal(self, command_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events_of(command_id) if e["decision"] in ("succeeded", "alreadyDone", "deadLetter")]

    def commands(self) -> list[Command]:
        """Every single-target command the queue accepted (retry copies left out), read back through the contract."""
        found = []
        for message in self.history:
            data = json.loads(message.body)
            if any(name in data for name in SELECTOR_FIELDS) or ATTEMPT_PROPERTY in message.application_properties:
                continue
            parsed = parse_message(message.body, message.message_id, ["local"], "local", None)
            assert isinstance(parsed, Command)
            found.append(parsed)
        return found

    def selector_bodies(self) -> list[dict[str, Any]]:
        """The bodies of every selector message the queue accepted (pages, per-job selectors), in order."""
        bodies = [json.loads(message.body) for message in self.history]
        return [body for body in bodies if "select" in body or "jobSelect" in body]


class FleetRuntime(Runtime):
    """The product's Runtime from a test env dict, with a ``FleetQueue`` in place of Service Bus."""

    def __init__(self, env: dict[str, str], queue: FleetQueue) -> None:
        super().__init__(env)
        self.queue = queue

    def _make_bus(self) -> ServiceBusGateway:
        return self.queue

    def drain(self) -> int:
        return self.queue.drain(self.processor.get())
