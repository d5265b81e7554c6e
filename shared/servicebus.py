"""The real Service Bus side: publish outcomes, schedule retry copies, enqueue new commands.

One ``ServiceBusClient`` per process. The SDK's senders are not thread-safe, so each sender is
guarded by its own lock; the Functions worker runs synchronous invocations on a thread pool.
A sender that failed is closed and rebuilt on next use (the SDK can leave a broken link behind,
e.g. after the service closed an idle connection).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender

from shared.config import ServiceBusSettings
from shared.messages import Outbound


def to_sdk(message: Outbound) -> ServiceBusMessage:
    return ServiceBusMessage(
        message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        subject=message.subject,
        content_type=message.content_type,
        application_properties=_properties(message),
    )


def _properties(message: Outbound) -> dict[str | bytes, Any]:
    properties: dict[str | bytes, Any] = {}
    properties.update(message.application_properties)
    return properties


def make_client(settings: ServiceBusSettings, credential: Callable[[], TokenCredential]) -> ServiceBusClient:
    """Identity-based in Azure; a connection string (the local peer's) for local runs."""
    if settings.namespace:
        return ServiceBusClient(settings.namespace, credential())
    assert settings.connection_string is not None  # config guarantees one of the two
    return ServiceBusClient.from_connection_string(settings.connection_string)


class _GuardedSender:
    def __init__(self, factory: Callable[[], ServiceBusSender]) -> None:
        self._factory = factory
        self._sender: ServiceBusSender | None = None
        self._lock = threading.Lock()

    @contextmanager
    def use(self) -> Iterator[ServiceBusSender]:
        with self._lock:
            if self._sender is None:
                self._sender = self._factory()
            try:
                yield self._sender
            except Exception:
                self._discard()
                raise

    def _discard(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            # Closing a broken link may fail too; the sender is dropped either way.
            with contextlib.suppress(Exception):
                sender.close()

    def close(self) -> None:
        with self._lock:
            self._discard()


class ServiceBusGateway:
    """Implements the processor's ``Bus`` and the producers' enqueue on one client."""

    def __init__(self, client: ServiceBusClient, queue: str, topic: str) -> None:
        self._client = client
        self._queue = _GuardedSender(lambda: client.get_queue_sender(queue))
        self._topic = _GuardedSender(lambda: client.get_topic_sender(topic))

    def publish(self, message: Outbound) -> None:
        with self._topic.use() as sender:
            sender.send_messages(to_sdk(message))

    def schedule(self, message: Outbound) -> None:
        at = message.scheduled_enqueue_time or datetime.now(UTC)
        with self._queue.use() as sender:
            sender.schedule_messages(to_sdk(message), at)

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        """Send commands in as few SDK batches as fit; return how many were sent."""
        sent = 0
        with self._queue.use() as sender:
            batch = sender.create_message_batch()
            for message in messages:
                sdk_message = to_sdk(message)
                try:
                    batch.add_message(sdk_message)
                except ValueError:  # MessageSizeExceededError: this batch is full
                    sender.send_messages(batch)
                    batch = sender.create_message_batch()
                    batch.add_message(sdk_message)
                sent += 1
            if len(batch):
                sender.send_messages(batch)
        return sent

    def close(self) -> None:
        self._queue.close()
        self._topic.close()
        self._client.close()
