"""Settlement through the package's own ServiceBusMessageActions, over gRPC, to the local host's service.

Each test runs a function under ``QueueDriver`` against the peer. The function gets what a function gets
in Azure (the package's decoded message and its gRPC ``ServiceBusMessageActions``) and settles, or not.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc  # type: ignore[import-untyped]
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage
from azurefunctions.extensions.bindings import servicebus
from azurefunctions.extensions.bindings.servicebus.serviceBusMessageActions import SettlementError

from emulators.servicebus import ServiceBusPeer
from local.queue_driver import QueueDriver
from local.settlement import message_actions
from tests.binding.conftest import Calls, send

Drive = Callable[..., QueueDriver]


def status_of(error: SettlementError) -> grpc.StatusCode:
    original = error.original
    assert isinstance(original, grpc.RpcError), original
    return original.code()


def details_of(error: SettlementError) -> str:
    return str(error.original.details())


def settle_safely(settle: Callable[[], None]) -> SettlementError | None:
    try:
        settle()
    except SettlementError as error:
        return error
    return None


def wait_until(condition: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class _Token:
    """Anything with a ``lock_token`` is enough for the package's actions."""

    def __init__(self, token: uuid.UUID) -> None:
        self.lock_token = token


def test_an_unknown_lock_token_is_a_failed_precondition(peer: ServiceBusPeer) -> None:
    error = settle_safely(lambda: message_actions().complete(_Token(uuid.uuid4())))
    assert error is not None and status_of(error) == grpc.StatusCode.FAILED_PRECONDITION
    assert "not found" in details_of(error)


def test_a_completed_message_is_gone_and_a_second_settlement_is_a_failed_precondition(
    drive: Drive, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        first = settle_safely(lambda: actions.complete(message))
        second = settle_safely(lambda: actions.deadletter(message, deadletter_reason="again"))
        calls.add(first=first, second=second)

    drive(function, "twice")
    send(client, "twice", ServiceBusMessage(b"{}", message_id="twice"))
    (call,) = calls.wait(1)
    assert call["first"] is None
    assert status_of(call["second"]) == grpc.StatusCode.FAILED_PRECONDITION
    assert "already completed" in details_of(call["second"])
    wait_until(lambda: peer.messages("twice") == [])
    assert peer.messages("twice/$DeadLetterQueue") == []


def test_dead_letter_reason_and_description_reach_the_peer(
    drive: Drive, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        actions.deadletter(message, deadletter_reason="InvalidCommand", deadletter_error_description="no action")

    drive(function, "settle")
    send(client, "settle", ServiceBusMessage(b"{}", message_id="to-dlq"))
    wait_until(lambda: len(peer.messages("settle/$DeadLetterQueue")) == 1)
    (dead,) = peer.messages("settle/$DeadLetterQueue")
    assert (dead["dead_letter_reason"], dead["dead_letter_description"]) == ("InvalidCommand", "no action")


def test_settling_after_the_invocation_returned_is_a_failed_precondition(
    drive: Drive, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        calls.add(message=message, actions=actions)  # keeps them, settles nothing

    drive(function, "late", max_lock_renewal=0)
    send(client, "late", ServiceBusMessage(b"{}", message_id="late"))
    (call,) = calls.wait(1)
    time.sleep(0.2)  # the invocation has returned
    error = settle_safely(lambda: call["actions"].complete(call["message"]))
    assert error is not None and status_of(error) == grpc.StatusCode.FAILED_PRECONDITION
    assert peer.messages("late")[0]["state"] == "locked"  # nothing was settled
    calls.wait(2)  # delivered again once the 2 s lock expired


def test_a_settlement_the_peer_refuses_is_unknown_with_the_reason(drive: Drive, client: ServiceBusClient) -> None:
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        if len(calls.items) == 0:
            time.sleep(1.5)  # the 1 s lock expires: no renewal (max_lock_renewal=0)
            calls.add(error=settle_safely(lambda: actions.complete(message)))
        else:
            actions.complete(message)
            calls.add(error=None)

    drive(function, "refused", max_lock_renewal=0, concurrency=1)
    send(client, "refused", ServiceBusMessage(b"{}", message_id="refused"))
    first, second = calls.wait(2)
    assert status_of(first["error"]) == grpc.StatusCode.UNKNOWN
    assert "MessageLockLostError" in details_of(first["error"])
    assert second["error"] is None


def test_a_function_that_raises_has_its_message_abandoned(drive: Drive, client: ServiceBusClient) -> None:
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        calls.add(message_id=message.message_id)
        if len(calls.items) == 1:
            raise RuntimeError("the first invocation fails")
        actions.complete(message)

    drive(function, "raises")
    send(client, "raises", ServiceBusMessage(b"{}", message_id="raises"))
    first, second = calls.wait(2)
    assert second["message_id"] == "raises"
    assert second["at"] - first["at"] < 5  # abandoned at once, not after the 30 s lock


def test_an_unsettled_message_comes_back_only_after_its_lock_expired(
    drive: Drive, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        calls.add(locked_until=message.locked_until_utc)
        if len(calls.items) > 1:
            actions.complete(message)

    drive(function, "unsettled")
    send(client, "unsettled", ServiceBusMessage(b"{}", message_id="unsettled"))
    first, second = calls.wait(2)
    assert second["at"] - first["at"] >= 1.8  # the queue's lock is 2 s; renewal stopped when the function returned
    wait_until(lambda: peer.messages("unsettled") == [])


def test_the_lock_is_renewed_while_the_invocation_runs(
    drive: Drive, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        calls.add()
        time.sleep(4.5)  # more than twice the 2 s lock
        actions.complete(message)

    drive(function, "renewed", max_lock_renewal=30)
    send(client, "renewed", ServiceBusMessage(b"{}", message_id="renewed"))
    calls.wait(1)
    wait_until(lambda: peer.messages("renewed") == [], timeout=10)
    assert len(calls.items) == 1  # never delivered twice


def test_a_message_the_host_cannot_bind_is_abandoned_until_it_is_dead_lettered(
    drive: Drive, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    """As in Azure: the function never runs, each delivery fails, the broker dead-letters it."""
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        calls.add()

    drive(function, "unbindable")
    # A list-valued application property: the .NET SDK's receive conversion refuses it.
    send(client, "unbindable", ServiceBusMessage(b"{}", message_id="unbindable", application_properties={"l": [1]}))  # type: ignore[dict-item]
    wait_until(lambda: len(peer.messages("unbindable/$DeadLetterQueue")) == 1)
    (dead,) = peer.messages("unbindable/$DeadLetterQueue")
    assert dead["dead_letter_reason"] == "MaxDeliveryCountExceeded"
    assert calls.items == []


def test_the_function_gets_the_packages_own_types(drive: Drive, client: ServiceBusClient) -> None:
    calls = Calls()

    def function(message: servicebus.ServiceBusReceivedMessage, actions: servicebus.ServiceBusMessageActions) -> None:
        calls.add(message=message, actions=actions)
        actions.complete(message)

    drive(function, "types")
    send(client, "types", ServiceBusMessage(b"{}", message_id="types"))
    (call,) = calls.wait(1)
    message: Any = call["message"]
    assert type(message) is ServiceBusReceivedMessage  # what ServiceBusConverter.decode returns
    assert vars(message)["_receiver"] is None  # decoded from binding data, not the receiver's own object
    assert type(call["actions"]) is servicebus.ServiceBusMessageActions
    assert call["actions"] is servicebus.ServiceBusMessageActions.get_instance()
