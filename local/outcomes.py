"""Listen to the outcome topic: every event, handed to a callback, across peer restarts."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any, Final

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage
from azure.servicebus.exceptions import ServiceBusError

ALL_OUTCOMES: Final = "all-outcomes"  # the subscription without a filter, as infra/ deploys it
log = logging.getLogger("local.outcomes")


def event_of(message: ServiceBusReceivedMessage) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(b"".join(message.body))
    return event


class OutcomeListener:
    """Receives from a topic subscription and completes each message after ``on_message`` ran.

    A broken connection (the peer restarted) is rebuilt; messages received but not completed come
    back, so ``on_message`` may see one twice: deduplicate on ``message_id`` where it matters.
    """

    def __init__(
        self,
        connection_string: str,
        topic: str,
        on_message: Callable[[ServiceBusReceivedMessage], None],
        subscription: str = ALL_OUTCOMES,
        max_wait_time: float = 0.5,
    ) -> None:
        self._connection_string = connection_string
        self._topic = topic
        self._subscription = subscription
        self._on_message = on_message
        self._max_wait_time = max_wait_time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"outcomes:{subscription}", daemon=True)

    def start(self) -> OutcomeListener:
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
                    client.get_subscription_receiver(self._topic, self._subscription) as receiver,
                ):
                    while not self._stop.is_set():
                        for message in receiver.receive_messages(50, self._max_wait_time):
                            self._on_message(message)
                            receiver.complete_message(message)
            except ServiceBusError as exc:
                log.info("outcome listener reconnecting after %s", type(exc).__name__)
                self._stop.wait(0.5)
