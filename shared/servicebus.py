"""The real Service Bus side: publish outcomes, schedule retry copies, enqueue new commands.

One ``ServiceBusClient`` per process. The Functions worker runs synchronous invocations on a thread
pool, and the SDK's senders are not thread-safe, so each operation borrows a sender of its own from a
small pool. A sender that failed is closed and replaced (the SDK can leave a broken link behind, e.g.
after the service closed an idle connection).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

from azure.core.credentials import TokenCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSender

from shared.config import ServiceBusSettings
from shared.deadline import within
from shared.messages import Outbound
from shared.telemetry import TRACE_PROPERTIES

T = TypeVar("T")
MAX_IDLE_SENDERS: Final = 32  # as many as the worker's concurrent invocations could use at once
ENQUEUE_CHUNK: Final = 100  # commands sent under one time limit


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
    """Trace properties go under bytes keys: the SDK's own tracing adds them with ``setdefault`` on bytes
    keys, so a str key would put a second, different ``traceparent`` on the wire (docs/observability.md)."""
    return {
        (name.encode() if name in TRACE_PROPERTIES else name): value
        for name, value in message.application_properties.items()
    }


def make_client(settings: ServiceBusSettings, credential: Callable[[], TokenCredential]) -> ServiceBusClient:
    """Identity-based in Azure; a connection string (the local peer's) for local runs."""
    if settings.namespace:
        return ServiceBusClient(settings.namespace, credential())
    assert settings.connection_string is not None  # config guarantees one of the two
    return ServiceBusClient.from_connection_string(settings.connection_string)


class _SenderPool:
    """Senders of one entity, each lent to one operation at a time.

    The SDK's senders are not thread-safe, so an operation needs a sender to itself; lending from a
    pool (creating one when none is idle) lets concurrent invocations send side by side instead of
    queueing behind one lock across each network wait. Every operation runs under a time limit; a
    sender whose operation failed or timed out is closed once that operation returns, never reused.
    """

    def __init__(self, factory: Callable[[], ServiceBusSender], timeout: float, what: str) -> None:
        self._factory = factory
        self._timeout = timeout
        self._what = what
        self._idle: list[ServiceBusSender] = []
        self._lock = threading.Lock()  # guards the idle list only; never held across a network call

    def run(self, operation: Callable[[ServiceBusSender, float], T]) -> T:
        sender = self._take()
        result = within(self._timeout, self._what, lambda: operation(sender, self._timeout), lambda: _close(sender))
        with self._lock:
            if len(self._idle) < MAX_IDLE_SENDERS:
                self._idle.append(sender)
                return result
        _close(sender)
        return result

    def _take(self) -> ServiceBusSender:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._factory()  # no network: the link opens on the sender's first operation

    def close(self) -> None:
        """Close the idle senders side by side: each close waits for the peer's detach."""
        with self._lock:
            idle, self._idle = self._idle, []
        if idle:
            with ThreadPoolExecutor(len(idle), thread_name_prefix="sender-close") as closing:
                closing.map(_close, idle)


def _close(sender: ServiceBusSender) -> None:
    # Closing a broken link may fail too; the sender is dropped either way.
    with contextlib.suppress(Exception):
        sender.close()


class ServiceBusGateway:
    """Implements the processor's ``Bus`` and the producers' enqueue on one client.

    Each operation is bounded by ``timeout`` seconds (``SERVICEBUS_TIMEOUT_SECONDS``) and raises
    ``DeadlineExceeded`` past it; enqueuing many commands is bounded per chunk of ``ENQUEUE_CHUNK``.
    """

    def __init__(self, client: ServiceBusClient, queue: str, topic: str, timeout: float) -> None:
        self._client = client
        self._queue = _SenderPool(lambda: client.get_queue_sender(queue), timeout, f"sending to queue {queue}")
        self._topic = _SenderPool(lambda: client.get_topic_sender(topic), timeout, f"publishing to topic {topic}")

    def publish(self, message: Outbound) -> None:
        self._topic.run(lambda sender, timeout: sender.send_messages(to_sdk(message), timeout=timeout))

    def schedule(self, message: Outbound) -> None:
        at = message.scheduled_enqueue_time or datetime.now(UTC)
        self._queue.run(lambda sender, timeout: sender.schedule_messages(to_sdk(message), at, timeout=timeout))

    def enqueue(self, messages: Iterable[Outbound]) -> int:
        """Send commands in as few SDK batches as fit; return how many were sent."""
        sent = 0
        iterator = iter(messages)
        while chunk := list(itertools.islice(iterator, ENQUEUE_CHUNK)):
            sent += self._queue.run(functools.partial(_send_batched, messages=chunk))
        return sent

    def close(self) -> None:
        self._queue.close()
        self._topic.close()
        self._client.close()


def _send_batched(sender: ServiceBusSender, timeout: float, messages: list[Outbound]) -> int:
    sent = 0
    batch = sender.create_message_batch()
    for message in messages:
        sdk_message = to_sdk(message)
        try:
            batch.add_message(sdk_message)
        except ValueError:  # MessageSizeExceededError: this batch is full
            sender.send_messages(batch, timeout=timeout)
            batch = sender.create_message_batch()
            batch.add_message(sdk_message)
        sent += 1
    if len(batch):
        sender.send_messages(batch, timeout=timeout)
    return sent
