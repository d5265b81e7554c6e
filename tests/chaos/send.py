"""Send the run's messages with the real azure-servicebus SDK, riding out peer restarts.

A send that fails because the peer is away is sent again once it is back; the repeat keeps its
message_id, so the queue's duplicate detection drops it if the first one had arrived after all.
A message the SDK refuses to encode is reported as unsendable instead of being retried forever.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender
from azure.servicebus.amqp import AmqpAnnotatedMessage

from tests.chaos.model import CHAOS_KEY, MalformedMessage, ValidCommand
from tests.chaos.workload import body

log = logging.getLogger("tests.chaos")
SdkMessage = ServiceBusMessage | AmqpAnnotatedMessage


def valid_message(command: ValidCommand, resend: bool = False) -> ServiceBusMessage:
    message_id = f"{command.command_id}~resend" if resend else command.command_id
    return ServiceBusMessage(
        body(command),
        message_id=message_id,
        subject=command.action,
        content_type="application/json",
        application_properties={CHAOS_KEY: message_id},
    )


def malformed_message(message: MalformedMessage) -> SdkMessage:
    if message.body_kind == "data":
        return ServiceBusMessage(
            message.body,  # type: ignore[arg-type]  # bytes, by construction
            message_id=message.message_id,  # type: ignore[arg-type]  # an int, a UUID ... on purpose
            application_properties=message.properties,
        )
    body: dict[str, Any] = (
        {"value_body": message.body} if message.body_kind == "value" else {"sequence_body": message.body}
    )
    return AmqpAnnotatedMessage(
        **body,
        properties={"message_id": message.message_id},
        application_properties=message.properties,
    )


def _encoding_failure(exc: BaseException) -> bool:
    """The SDK could not encode the message (e.g. an int property beyond AMQP int), or the peer could
    not decode it (amqp:decode-error, e.g. a binary application-property key): not transient."""
    seen: BaseException | None = exc
    while seen is not None:
        if "decode-error" in str(seen) or "DecodeError" in str(seen):
            return True
        if isinstance(seen, ValueError | TypeError | OverflowError) and not isinstance(seen, ConnectionError):
            return True
        if "Handler failed" in str(seen) and ("invalid" in str(seen) or "encode" in str(seen)):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class Sender:
    def __init__(
        self, connection_string: str, queue: str, peer_up: Callable[[], bool], give_up_after: float = 120
    ) -> None:
        self._connection_string = connection_string
        self._queue = queue
        self._peer_up = peer_up
        self._give_up_after = give_up_after
        self._client: ServiceBusClient | None = None
        self._sender: ServiceBusSender | None = None
        self.resends_after_error = 0

    def _open(self) -> ServiceBusSender:
        if self._sender is None:
            self._client = ServiceBusClient.from_connection_string(self._connection_string)
            self._sender = self._client.get_queue_sender(self._queue)
        return self._sender

    def _reset(self) -> None:
        for closable in (self._sender, self._client):
            if closable is not None:
                with contextlib.suppress(Exception):  # a broken link may fail to close; it is dropped anyway
                    closable.close()
        self._sender, self._client = None, None

    def close(self) -> None:
        self._reset()

    def send(self, messages: Sequence[SdkMessage], may_refuse: bool = False) -> bool:
        """Send; True once the peer took them. False if the SDK cannot encode them and ``may_refuse``
        (one malformed message at a time); a list of valid commands is never given up that way."""
        deadline = time.monotonic() + self._give_up_after
        encoding_errors = 0
        while True:
            try:
                # One message goes alone: as a list the SDK sends it in batch format, and the peer then
                # drops application properties it cannot decode instead of refusing the message.
                sender = self._open()
                if len(messages) == 1:
                    sender.send_messages(messages[0], timeout=10)
                else:
                    sender.send_messages(list(messages), timeout=10)  # type: ignore[arg-type]  # a mixed list is fine
                return True
            except Exception as exc:
                self._reset()
                if may_refuse and _encoding_failure(exc) and self._peer_up():
                    encoding_errors += 1
                    if encoding_errors >= 2:
                        log.info("unsendable: %s", exc)
                        return False
                if time.monotonic() > deadline:
                    raise
                self.resends_after_error += 1
                while not self._peer_up() and time.monotonic() < deadline:
                    time.sleep(0.2)
                time.sleep(0.2)
