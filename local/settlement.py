"""The host side of ``ServiceBusMessageActions``: the ``Settlement`` gRPC service.

In Azure the Functions host serves ``Settlement`` (settlement.proto of Microsoft.Azure.WebJobs.Extensions.
ServiceBus, ``Grpc/SettlementService.cs``) on the gRPC endpoint the Python worker was started with; the
package's ``ServiceBusMessageActions.get_instance()`` reads ``--host``, ``--port`` and
``--functions-grpc-max-message-length`` from the worker's command line and calls it with the lock token.
The host looks the token up among the messages whose invocation is running (``MessagingProvider.
ActionsCache``, filled before and emptied after each invocation) and settles through the receiver.

This module is that service for the local host, generated code included: it uses the package's own
``settlement_pb2`` / ``settlement_pb2_grpc``. Its answers:

* ``FAILED_PRECONDITION`` for a lock token that is unknown, whose invocation has returned, or whose
  message is already settled;
* ``UNKNOWN`` with the peer's error when the peer refuses (a lost lock, ...), or when the host did not
  apply the settlement within its time limit;
* ``UNIMPLEMENTED`` for ``propertiesToModify`` (the Python SDK the local host receives with cannot modify
  properties when settling) and ``FAILED_PRECONDITION`` for the session calls (no sessions locally).

The SDK receiver is not thread-safe, so the service never touches it: it posts the settlement to the
owner of the message (the queue driver's thread, :class:`SettlementTarget`) and waits for the result.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol

os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # grpc's C core logs a GOAWAY at exit at INFO otherwise

import grpc  # type: ignore[import-untyped]
from azurefunctions.extensions.bindings.protos import settlement_pb2_grpc
from azurefunctions.extensions.bindings.servicebus import ServiceBusMessageActions
from google.protobuf.empty_pb2 import Empty  # type: ignore[import-untyped]

log = logging.getLogger("local.settlement")

# What the Functions host passes the worker (2 GiB - 1 is the host's default maximum message length).
MAX_MESSAGE_LENGTH = 2**31 - 1
DEFAULT_TIMEOUT = 30.0


class SettlementRefused(Exception):
    """The settlement cannot be applied: the message is no longer the function's to settle."""


@dataclass(frozen=True)
class Operation:
    kind: str  # complete, abandon, deadletter, defer, renew
    reason: str | None = None
    description: str | None = None


class SettlementTarget(Protocol):
    """Who owns a received message (its receiver): applies operations on its own thread."""

    def post(self, invocation: Invocation, operation: Operation) -> Future[None]: ...


@dataclass(eq=False)
class Invocation:
    """A message handed to a running invocation; settleable while ``open`` and not ``settled``."""

    token: str
    message: Any  # the receiver's azure.servicebus.ServiceBusReceivedMessage
    owner: SettlementTarget
    received_at: float
    open: bool = True
    settled: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            self.open = False

    def check(self) -> None:
        """Raise :class:`SettlementRefused` unless the function may still settle the message."""
        with self.lock:
            if not self.open:
                raise SettlementRefused(f"LockToken {self.token} not found: its invocation has returned.")
            if self.settled is not None:
                raise SettlementRefused(f"LockToken {self.token} not found: the message was already {self.settled}.")


class Registry:
    """Lock token -> running invocation, for every driver in the process (the host's ActionsCache)."""

    def __init__(self) -> None:
        self._items: dict[str, Invocation] = {}
        self._lock = threading.Lock()

    def add(self, invocation: Invocation) -> None:
        with self._lock:
            self._items[invocation.token] = invocation

    def remove(self, invocation: Invocation) -> None:
        with self._lock:
            if self._items.get(invocation.token) is invocation:
                del self._items[invocation.token]

    def get(self, token: str) -> Invocation | None:
        with self._lock:
            return self._items.get(token.lower())

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


class SettlementService(settlement_pb2_grpc.SettlementServicer):  # type: ignore[misc]
    def __init__(self, registry: Registry, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._registry = registry
        self._timeout = timeout

    def Complete(self, request: Any, context: grpc.ServicerContext) -> Empty:
        return self._settle(request.locktoken, Operation("complete"), context)

    def Abandon(self, request: Any, context: grpc.ServicerContext) -> Empty:
        self._no_properties(request, context)
        return self._settle(request.locktoken, Operation("abandon"), context)

    def Deadletter(self, request: Any, context: grpc.ServicerContext) -> Empty:
        self._no_properties(request, context)
        reason = request.deadletterReason.value if request.HasField("deadletterReason") else None
        description = (
            request.deadletterErrorDescription.value if request.HasField("deadletterErrorDescription") else None
        )
        return self._settle(request.locktoken, Operation("deadletter", reason, description), context)

    def Defer(self, request: Any, context: grpc.ServicerContext) -> Empty:
        self._no_properties(request, context)
        return self._settle(request.locktoken, Operation("defer"), context)

    def RenewMessageLock(self, request: Any, context: grpc.ServicerContext) -> Empty:
        return self._settle(request.locktoken, Operation("renew"), context)

    def GetSessionState(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"SessionId {request.sessionId} not found.")

    def SetSessionState(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"SessionId {request.sessionId} not found.")

    def ReleaseSession(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"SessionId {request.sessionId} not found.")

    def RenewSessionLock(self, request: Any, context: grpc.ServicerContext) -> Any:
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, f"SessionId {request.sessionId} not found.")

    @staticmethod
    def _no_properties(request: Any, context: grpc.ServicerContext) -> None:
        if request.propertiesToModify:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "propertiesToModify is not supported by the local host.")

    def _settle(self, token: str, operation: Operation, context: grpc.ServicerContext) -> Empty:
        status, details = self._apply(token, operation)
        if status is not None:
            log.info("settlement %s of %s answered %s: %s", operation.kind, token, status.name, details)
            context.abort(status, details)
        return Empty()

    def _apply(self, token: str, operation: Operation) -> tuple[grpc.StatusCode | None, str]:
        invocation = self._registry.get(token)
        if invocation is None:
            return grpc.StatusCode.FAILED_PRECONDITION, f"LockToken {token} not found."
        try:
            invocation.check()
        except SettlementRefused as exc:
            return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        future = invocation.owner.post(invocation, operation)
        try:
            future.result(timeout=self._timeout)
        except FutureTimeout:
            future.cancel()  # the owner skips it if it has not started it yet
            return grpc.StatusCode.UNKNOWN, f"the host did not apply {operation.kind} within {self._timeout:g} s"
        except SettlementRefused as exc:
            return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
        except Exception as exc:  # the peer refused: the reason goes back, as the host's ex.ToString() does
            return grpc.StatusCode.UNKNOWN, f"{type(exc).__name__}: {exc}"
        return None, ""


class SettlementServer:
    """The process's ``Settlement`` endpoint on a loopback port, shared by every queue driver.

    One per process, like the host's gRPC endpoint: the package's ``ServiceBusMessageActions`` is a
    process-wide singleton that reads the endpoint from the command line once. Started on first use and
    stopped when the process exits.
    """

    _shared: SettlementServer | None = None
    _shared_lock = threading.Lock()

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, workers: int = 64) -> None:
        self.registry = Registry()
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="settlement"),
            options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_LENGTH),
                ("grpc.max_receive_message_length", MAX_MESSAGE_LENGTH),
            ],
        )
        settlement_pb2_grpc.add_SettlementServicer_to_server(SettlementService(self.registry, timeout), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        if not self.port:
            raise RuntimeError("could not bind the settlement gRPC server to a loopback port")
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def worker_arguments(self) -> list[str]:
        """The command-line arguments the Functions host starts the worker with (those the package reads)."""
        return [
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--functions-grpc-max-message-length",
            str(MAX_MESSAGE_LENGTH),
        ]

    @classmethod
    def shared(cls) -> SettlementServer:
        """The process's server; on first use it is started and the worker arguments are set."""
        with cls._shared_lock:
            if cls._shared is None:
                server = cls()
                atexit.register(server.stop)
                _set_worker_arguments(server.worker_arguments())
                cls._shared = server
                log.info("Settlement gRPC service on %s", server.address)
            return cls._shared


def _set_worker_arguments(arguments: list[str]) -> None:
    """Put the worker's gRPC arguments on ``sys.argv``, where the package's ``parse_grpc_args`` reads them.

    The local host is the worker's process too, so its own command line gets them, as the Functions host
    gives them to the worker (``--host``/``--port`` already there are replaced).
    """
    argv = list(sys.argv)
    for name in ("--host", "--port", "--functions-grpc-max-message-length"):
        while name in argv[1:]:
            at = argv.index(name, 1)
            del argv[at : at + 2]
    sys.argv[:] = argv + arguments


def message_actions() -> Any:
    """The package's own ``ServiceBusMessageActions`` singleton, connected to the shared server."""
    server = SettlementServer.shared()
    actions = ServiceBusMessageActions.get_instance()
    uri = getattr(actions, "_uri", server.address)
    if uri != server.address:
        raise RuntimeError(
            f"ServiceBusMessageActions was created for {uri}, not for this process's settlement service "
            f"{server.address}: it reads the worker arguments once"
        )
    return actions
