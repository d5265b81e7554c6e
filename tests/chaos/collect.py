"""Collect what the system produced: every outcome event from the topic, every dead-lettered command.

Both keep each message once by its sequence number: a message received but not completed before the
peer went down is delivered again, and that is a redelivery to this subscriber, not a second outcome.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusSubQueue

from local.outcomes import OutcomeListener
from tests.chaos.model import CHAOS_KEY, DeadLetterRecord, OutcomeRecord

log = logging.getLogger("tests.chaos")


def text(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def properties_of(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    return {
        text(key): (text(value) if isinstance(value, bytes) else value)
        for key, value in (message.application_properties or {}).items()
    }


class OutcomeCollector:
    """Every distinct message of the topic subscription ``all-outcomes``."""

    def __init__(self, connection_string: str, topic: str) -> None:
        self._lock = threading.Lock()
        self.records: dict[int, OutcomeRecord] = {}
        self.deliveries = 0
        self.unreadable: list[str] = []
        self._listener = OutcomeListener(connection_string, topic, self._keep)

    def start(self) -> OutcomeCollector:
        self._listener.start()
        return self

    def stop(self) -> None:
        self._listener.stop()

    def _keep(self, message: ServiceBusReceivedMessage) -> None:
        # Runs on the listener's thread; anything raised here would end that thread.
        try:
            event = json.loads(b"".join(message.body))
            record = OutcomeRecord(
                sequence_number=int(message.sequence_number or 0),
                message_id=text(message.message_id),
                properties=properties_of(message),
                event=event if isinstance(event, dict) else {"unreadable": event},
            )
        except Exception as exc:
            with self._lock:
                self.unreadable.append(f"{message.message_id!r}: {type(exc).__name__}")
            return
        with self._lock:
            self.deliveries += 1
            self.records.setdefault(record.sequence_number, record)

    def snapshot(self) -> list[OutcomeRecord]:
        with self._lock:
            return list(self.records.values())


class DeadLetterCollector:
    """Every message of the command queue's dead-letter sub-queue (received and completed)."""

    def __init__(self, connection_string: str, queue: str) -> None:
        self._connection_string = connection_string
        self._queue = queue
        self._lock = threading.Lock()
        self.records: dict[int, DeadLetterRecord] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos:dead-letters", daemon=True)

    def start(self) -> DeadLetterCollector:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with (
                    ServiceBusClient.from_connection_string(self._connection_string) as client,
                    client.get_queue_receiver(self._queue, sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver,
                ):
                    while not self._stop.is_set():
                        for message in receiver.receive_messages(100, 0.5):
                            self._keep(message)
                            receiver.complete_message(message)
            except Exception as exc:  # the peer restarted: reconnect, as the other receivers do
                log.info("dead-letter collector reconnecting after %s", type(exc).__name__)
                self._stop.wait(0.5)

    def _keep(self, message: ServiceBusReceivedMessage) -> None:
        properties = properties_of(message)
        key = properties.get(CHAOS_KEY)
        command_id = properties.get("commandId")
        record = DeadLetterRecord(
            sequence_number=int(message.sequence_number or 0),
            message_id=text(message.message_id),
            reason=message.dead_letter_reason,
            description=message.dead_letter_error_description,
            chaos_key=None if key is None else str(key),
            command_id=None if command_id is None else str(command_id),
            delivery_count=int(message.delivery_count or 0),
        )
        with self._lock:
            self.records.setdefault(record.sequence_number, record)

    def snapshot(self) -> list[DeadLetterRecord]:
        with self._lock:
            return list(self.records.values())
