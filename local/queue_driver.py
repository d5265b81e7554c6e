"""Drive a Service Bus queue-triggered function from a real peek-lock receiver.

Like the Functions host: up to ``concurrency`` invocations run at once on a thread pool; the
function settles through a ``ServiceBusMessageActions``-shaped object; a function that raises has
its message abandoned. The SDK receiver is not thread-safe, so only the driver thread touches it:
invocations record their settlement and the driver applies it.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError

from local.functions import IndexedFunction

log = logging.getLogger("local.queue")


@dataclass
class RecordedActions:
    """What the function asked for; applied to the receiver by the driver thread."""

    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def complete(self, message: Any) -> None:
        self.calls.append(("complete", {}))

    def abandon(self, message: Any) -> None:
        self.calls.append(("abandon", {}))

    def deadletter(
        self,
        message: Any,
        deadletter_reason: str | None = None,
        deadletter_error_description: str | None = None,
    ) -> None:
        self.calls.append(
            ("deadletter", {"reason": deadletter_reason, "error_description": deadletter_error_description})
        )

    def defer(self, message: Any) -> None:
        self.calls.append(("defer", {}))


def settle(receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage, actions: RecordedActions) -> str:
    """Apply the first settlement the function asked for; abandon when it asked for none."""
    kind, arguments = actions.calls[0] if actions.calls else ("abandon", {})
    if kind == "complete":
        receiver.complete_message(message)
    elif kind == "deadletter":
        receiver.dead_letter_message(message, **arguments)
    elif kind == "defer":
        receiver.defer_message(message)
    else:
        receiver.abandon_message(message)
    return kind


class QueueDriver:
    def __init__(
        self,
        function: IndexedFunction,
        connection_string: str,
        queue: str,
        concurrency: int = 16,
    ) -> None:
        self._function = function
        self._connection_string = connection_string
        self._queue = queue
        self._concurrency = concurrency
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"queue:{function.name}", daemon=True)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=function.name)
        trigger_name = function.trigger["name"]
        # The one parameter not in the bindings is the settlement client (ServiceBusMessageActions).
        self._actions_names = [p for p in inspect.signature(function.call).parameters if p != trigger_name]
        self.invocations = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self._pool.shutdown(wait=True)

    def _invoke(self, message: ServiceBusReceivedMessage) -> RecordedActions:
        actions = RecordedActions()
        arguments: dict[str, Any] = {self._function.trigger["name"]: message}
        arguments.update(dict.fromkeys(self._actions_names, actions))
        try:
            self._function.call(**arguments)
        except Exception:
            log.exception("function %s raised; the message is abandoned", self._function.name)
            return RecordedActions([("abandon", {})])
        return actions

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with (
                    ServiceBusClient.from_connection_string(self._connection_string) as client,
                    client.get_queue_receiver(self._queue, prefetch_count=0) as receiver,
                ):
                    self._pump(receiver)
            except ServiceBusError as exc:
                # The peer restarted or the link broke: build a new client, as the host would.
                log.warning("receiver for %s failed (%s); reconnecting", self._queue, type(exc).__name__)
                self._stop.wait(1.0)

    def _pump(self, receiver: ServiceBusReceiver) -> None:
        inflight: dict[Future[RecordedActions], ServiceBusReceivedMessage] = {}
        try:
            while not self._stop.is_set():
                free = self._concurrency - len(inflight)
                if free > 0:
                    wait_time = 0.05 if inflight else 1.0
                    for message in receiver.receive_messages(max_message_count=free, max_wait_time=wait_time):
                        inflight[self._pool.submit(self._invoke, message)] = message
                if inflight:
                    done, _ = wait(list(inflight), timeout=0.05, return_when=FIRST_COMPLETED)
                    for future in done:
                        settle(receiver, inflight.pop(future), future.result())
                        self.invocations += 1
        finally:
            self._drain(receiver, inflight)

    def _drain(self, receiver: ServiceBusReceiver, inflight: dict[Future[RecordedActions], Any]) -> None:
        """Let running invocations finish and settle them, so stopping loses no decision."""
        deadline = time.monotonic() + 30
        for future, message in inflight.items():
            actions = future.result(timeout=max(0.0, deadline - time.monotonic()))
            try:
                settle(receiver, message, actions)
            except (ServiceBusError, ValueError):  # ValueError: the SDK's handler is already shut down
                log.warning("could not settle %s; its lock will expire and it is delivered again", message.message_id)
