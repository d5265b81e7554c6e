"""Apply the processor's settlement to a received message, and read what processing needs from it."""

from __future__ import annotations

from typing import Any, Protocol

from shared.messages import read_attempt, read_properties
from shared.processor import Received, Settlement


class MessageActions(Protocol):
    """What ``ServiceBusMessageActions`` (Functions) offers; the local host passes an object that records
    the call and applies it to its receiver (local/queue_driver.py)."""

    def complete(self, message: Any) -> None: ...

    def abandon(self, message: Any) -> None: ...

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None: ...


def received(message: Any) -> Received:
    """From an ``azure.servicebus.ServiceBusReceivedMessage`` (what the SDK-type binding gives)."""
    properties = read_properties(message.application_properties)
    return Received(body=message.body, message_id=message.message_id, attempt=read_attempt(properties))


def settle(actions: MessageActions, message: Any, settlement: Settlement) -> None:
    if settlement.kind == "complete":
        actions.complete(message)
    elif settlement.kind == "deadletter":
        actions.deadletter(
            message,
            deadletter_reason=settlement.reason,
            deadletter_error_description=settlement.description,
        )
    else:
        actions.abandon(message)
