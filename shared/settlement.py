"""Apply the processor's settlement to a received message, and read what processing needs from it."""

from __future__ import annotations

import logging
from typing import Any, Protocol

from shared.deadline import within
from shared.messages import Received
from shared.processor import Settlement

log = logging.getLogger("batch_lifecycle")


class MessageActions(Protocol):
    """What ``ServiceBusMessageActions`` (Functions) offers: the package's client settles over gRPC with the
    Functions host (in Azure, and locally against local/settlement.py's stand-in of the host's service)."""

    def complete(self, message: Any) -> None: ...

    def abandon(self, message: Any) -> None: ...

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None: ...


def received(message: Any) -> Received:
    """From an ``azure.servicebus.ServiceBusReceivedMessage`` (what the SDK-type binding gives).

    Reading an attribute of a decoded message can itself fail (the body is a one-shot generator, a
    section may not decode), so each part is fetched under a guard and ``Received.read`` does the rest.
    """
    return Received.read(_part(message, "body"), _part(message, "message_id"), _part(message, "application_properties"))


def _part(message: Any, name: str) -> Any:
    try:
        return getattr(message, name)
    except Exception:
        return None


def settle(actions: MessageActions, message: Any, settlement: Settlement, timeout: float) -> None:
    """Apply the settlement within ``timeout`` seconds; a settlement that fails is logged, never raised.

    A message whose settlement was lost is delivered again when its lock expires; the redelivery is
    harmless (see docs/design.md, "Guarantees"), so raising here would only add an abandon to it.
    """
    try:
        within(timeout, f"settling ({settlement.kind})", lambda: _apply(actions, message, settlement))
    except Exception as exc:
        log.warning("settlement %s failed (%s); the message is delivered again", settlement.kind, type(exc).__name__)


def _apply(actions: MessageActions, message: Any, settlement: Settlement) -> None:
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
