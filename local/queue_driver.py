"""Drive a Service Bus queue-triggered function the way the Functions host and the Python worker do.

For each message a peek-lock receiver delivers, the driver does what happens in Azure (docs/local-host.md):

1. the host's part: the model binding data, built from the message exactly as the .NET Service Bus
   extension builds it (``local.binding``), and the lock token registered for settlement;
2. the worker's part: the binding data decoded by the installed package's own converter
   (``ServiceBusConverter``) into the ``ServiceBusReceivedMessage`` the function gets, and the package's
   own ``ServiceBusMessageActions`` (a gRPC client of the host's ``Settlement`` service,
   ``local.settlement``) as the settlement client;
3. the function runs on a thread pool, up to ``concurrency`` at once; it settles over gRPC while it runs.
   When it returns, the lock token is no longer settleable. A function that raised has its message
   abandoned (unless it settled it); a message the function did not settle stays locked, its lock
   renewed while the invocation runs (up to ``max_lock_renewal`` seconds, host.json's
   ``maxAutoLockRenewalDuration``), and is delivered again once the lock expires.

The SDK receiver is not thread-safe, so only the driver thread touches it: the settlement service posts
each settlement to the driver (:meth:`QueueDriver.post`) and waits for the result.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
import typing
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.servicebus import ServiceBusClient, ServiceBusReceivedMessage, ServiceBusReceiver
from azure.servicebus.exceptions import ServiceBusError
from azurefunctions.extensions.base import GrpcClientType
from azurefunctions.extensions.bindings.servicebus import ServiceBusConverter

from local.binding import (
    BindingConversionError,
    binding_content,
    decode_with_package,
    delivery_tag_of,
    install_wire_capture,
    wire_of,
)
from local.functions import IndexedFunction
from local.settlement import Invocation, Operation, SettlementRefused, SettlementServer, message_actions

log = logging.getLogger("local.queue")

Decoder = Callable[[bytes, Any], Any]


@dataclass
class _Renewal:
    next_at: float  # monotonic time of the next renewal
    until: float  # no renewal after this (maxAutoLockRenewalDuration from the receipt)


class QueueDriver:
    def __init__(
        self,
        function: IndexedFunction,
        connection_string: str,
        queue_name: str,
        concurrency: int = 16,
        *,
        max_lock_renewal: float = 300.0,
        decode: Decoder = decode_with_package,
        settlement: SettlementServer | None = None,
    ) -> None:
        self._function = function
        self._connection_string = connection_string
        self._queue = queue_name
        self._concurrency = concurrency
        self._max_lock_renewal = max_lock_renewal
        self._decode = decode
        self._trigger_name, self._pytype, self._actions_names = _parameters(function)
        install_wire_capture()
        self._settlement = settlement or SettlementServer.shared()
        self._actions = message_actions()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._requests: queue.SimpleQueue[tuple[Invocation, Operation, Future[None]]] = queue.SimpleQueue()
        self._renewals: dict[Invocation, _Renewal] = {}
        self._thread = threading.Thread(target=self._run, name=f"queue:{function.name}", daemon=True)
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix=function.name)
        self.invocations = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=45)
        self._pool.shutdown(wait=True)

    # --- SettlementTarget: called by the settlement service's threads --------------------------------

    def post(self, invocation: Invocation, operation: Operation) -> Future[None]:
        future: Future[None] = Future()
        self._requests.put((invocation, operation, future))
        self._wake.set()
        return future

    # --- the invocation (pool threads) ------------------------------------------------------------------

    def _invoke(self, invocation: Invocation, wire: bytes, tag: bytes) -> bool:
        """Bind and call the function; True when the invocation failed (the message is then abandoned)."""
        try:
            message = self._decode(binding_content(wire, tag), self._pytype)
            arguments = {self._trigger_name: message, **dict.fromkeys(self._actions_names, self._actions)}
            self._function.call(**arguments)
        except BindingConversionError as exc:
            log.error("the host cannot bind message %s (%s); the invocation fails", invocation.token, exc)
            return True
        except Exception:
            log.exception("function %s raised; the message is abandoned", self._function.name)
            return True
        finally:
            invocation.close()  # from here on the lock token is not settleable
            self._wake.set()
        return False

    # --- the driver thread ----------------------------------------------------------------------------

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
        running: dict[Future[bool], Invocation] = {}
        try:
            while not self._stop.is_set():
                self._wake.clear()
                self._serve(receiver)
                self._finish(receiver, running)
                self._renew(receiver)
                free = self._concurrency - len(running)
                if free > 0:
                    wait_time = 0.05 if running else 1.0
                    for message in receiver.receive_messages(max_message_count=free, max_wait_time=wait_time):
                        self._begin(receiver, message, running)
                else:
                    self._wake.wait(0.5)
        finally:
            self._drain(receiver, running)

    def _begin(
        self, receiver: ServiceBusReceiver, message: ServiceBusReceivedMessage, running: dict[Future[bool], Invocation]
    ) -> None:
        try:
            wire, tag = wire_of(message), delivery_tag_of(message)
        except (RuntimeError, BindingConversionError) as exc:
            log.error("cannot hand message %s to the function (%s); abandoning it", message.message_id, exc)
            _quietly(receiver.abandon_message, message)
            return
        invocation = Invocation(str(message.lock_token), message, self, time.monotonic())
        self._renewals[invocation] = _Renewal(self._next_renewal(message), time.monotonic() + self._max_lock_renewal)
        self._settlement.registry.add(invocation)
        running[self._pool.submit(self._invoke, invocation, wire, tag)] = invocation

    def _serve(self, receiver: ServiceBusReceiver) -> None:
        """Apply the settlements the functions asked for, in order."""
        while True:
            try:
                invocation, operation, future = self._requests.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue  # the service gave up waiting
            try:
                self._apply(receiver, invocation, operation)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(None)

    def _apply(self, receiver: ServiceBusReceiver, invocation: Invocation, operation: Operation) -> None:
        invocation.check()
        if invocation.owner is not self:
            raise SettlementRefused(f"LockToken {invocation.token} belongs to another receiver")
        message = invocation.message
        if operation.kind == "renew":
            receiver.renew_message_lock(message)
            self._renewals[invocation] = _Renewal(self._next_renewal(message), self._renewals[invocation].until)
            return
        if operation.kind == "complete":
            receiver.complete_message(message)
        elif operation.kind == "abandon":
            receiver.abandon_message(message)
        elif operation.kind == "deadletter":
            receiver.dead_letter_message(message, reason=operation.reason, error_description=operation.description)
        elif operation.kind == "defer":
            receiver.defer_message(message)
        else:
            raise ValueError(f"unknown settlement {operation.kind!r}")
        with invocation.lock:
            invocation.settled = {"deadletter": "dead-lettered", "defer": "deferred"}.get(
                operation.kind, operation.kind + "d"
            )

    def _finish(self, receiver: ServiceBusReceiver, running: dict[Future[bool], Invocation]) -> None:
        for future in [f for f in running if f.done()]:
            invocation = running.pop(future)
            self._renewals.pop(invocation, None)
            failed = future.result()
            if failed and invocation.settled is None:
                _quietly(receiver.abandon_message, invocation.message)
            elif invocation.settled is None:
                log.info("message %s was not settled; it is delivered again when its lock expires", invocation.token)
            self._settlement.registry.remove(invocation)
            self.invocations += 1

    def _next_renewal(self, message: ServiceBusReceivedMessage) -> float:
        """Renew when less than a third of the lock (at most 10 s) is left, as the SDKs' renewers do."""
        locked_until = message.locked_until_utc
        if locked_until is None:
            return float("inf")
        left = (locked_until - datetime.now(UTC)).total_seconds()
        return time.monotonic() + max(0.0, left - min(10.0, max(left, 0.0) / 3))

    def _renew(self, receiver: ServiceBusReceiver) -> None:
        now = time.monotonic()
        for invocation, renewal in list(self._renewals.items()):
            if now < renewal.next_at or invocation.settled is not None or not invocation.open:
                continue
            if now >= renewal.until:
                renewal.next_at = float("inf")  # maxAutoLockRenewalDuration reached: the lock may expire
                continue
            try:
                receiver.renew_message_lock(invocation.message)
            except Exception as exc:
                log.warning("renewing the lock of %s failed (%s)", invocation.token, type(exc).__name__)
                renewal.next_at = float("inf")
            else:
                renewal.next_at = self._next_renewal(invocation.message)

    def _drain(self, receiver: ServiceBusReceiver, running: dict[Future[bool], Invocation]) -> None:
        """Let running invocations finish, settling as they ask, so stopping loses no decision."""
        deadline = time.monotonic() + 30
        while running and time.monotonic() < deadline:
            self._wake.clear()
            self._serve(receiver)
            self._finish(receiver, running)
            self._renew(receiver)
            if running:
                self._wake.wait(0.05)
        self._serve(receiver)
        for invocation in running.values():
            log.warning("invocation of %s still running at stop; its lock will expire", invocation.token)
            self._settlement.registry.remove(invocation)


def _quietly(settle: Callable[[ServiceBusReceivedMessage], None], message: ServiceBusReceivedMessage) -> None:
    try:
        settle(message)
    except Exception as exc:  # ServiceBusError, or ValueError once the SDK's handler is shut down
        log.warning("could not settle %s (%s); its lock will expire", message.message_id, type(exc).__name__)


def _parameters(function: IndexedFunction) -> tuple[str, Any, list[str]]:
    """The trigger parameter, its annotation, and the parameters that take ``ServiceBusMessageActions``.

    As the worker does: the trigger's annotation must be one the package's converter accepts; any other
    parameter must be a gRPC client type of the package (``ServiceBusMessageActions``).
    """
    hints = typing.get_type_hints(function.call)
    trigger = str(function.trigger["name"])
    pytype = hints.get(trigger)
    if not ServiceBusConverter.check_input_type_annotation(pytype):
        raise TypeError(
            f"{function.name}: the local host binds {trigger!r} only as the package's ServiceBusReceivedMessage"
        )
    others = [name for name in inspect.signature(function.call).parameters if name != trigger]
    for name in others:
        hint = hints.get(name)
        if not (isinstance(hint, type) and issubclass(hint, GrpcClientType)):
            raise TypeError(f"{function.name}: parameter {name!r} is neither the trigger nor ServiceBusMessageActions")
    return trigger, pytype, others
