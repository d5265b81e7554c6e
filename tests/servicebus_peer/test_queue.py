"""Queue semantics through the real sync SDK: send, peek-lock, each settlement, DLQ, deferral, batches."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from azure.servicebus import (
    ServiceBusClient,
    ServiceBusMessage,
    ServiceBusMessageState,
    ServiceBusReceiveMode,
    ServiceBusSubQueue,
)

from emulators.servicebus import ServiceBusPeer

pytestmark = pytest.mark.slow


def test_send_receive_complete_round_trips_fields(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    message = ServiceBusMessage(
        b'{"action": "deleteTask"}',
        message_id="cmd-1",
        correlation_id="corr-1",
        subject="command",
        content_type="application/json",
        application_properties={"attempt": 2, "source": "test"},
    )
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(message)
    with client.get_queue_receiver("settle", max_wait_time=5) as receiver:
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert b"".join(received.body) == b'{"action": "deleteTask"}'
        assert (received.message_id, received.correlation_id, received.subject) == ("cmd-1", "corr-1", "command")
        assert received.content_type == "application/json"
        assert received.application_properties == {b"attempt": 2, b"source": b"test"}
        assert received.delivery_count == 0
        assert received.sequence_number and received.sequence_number > 0
        assert received.lock_token is not None
        assert received.enqueued_time_utc is not None
        assert received.locked_until_utc is not None
        assert received.locked_until_utc > dt.datetime.now(dt.UTC)
        assert peer.messages("settle", "locked")[0]["message_id"] == "cmd-1"
        receiver.complete_message(received)
    assert peer.messages("settle") == []


def test_abandon_redelivers_with_delivery_count(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("retry me", message_id="abandon-1"))
    with client.get_queue_receiver("settle", max_wait_time=5) as receiver:
        (first,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.abandon_message(first)
        (second,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert second.message_id == "abandon-1"
        assert second.delivery_count == 1
        assert second.lock_token != first.lock_token
        receiver.complete_message(second)
    assert peer.messages("settle") == []


def test_dead_letter_with_reason_then_read_dead_letter_queue(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("settle") as sender:
        sender.send_messages(ServiceBusMessage("poison", message_id="dl-1", application_properties={"k": "v"}))
    with client.get_queue_receiver("settle", max_wait_time=5) as receiver:
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.dead_letter_message(received, reason="InvalidCommand", error_description="jobId is required")
    (stored,) = peer.messages("settle/$DeadLetterQueue")
    assert (stored["dead_letter_reason"], stored["dead_letter_description"]) == ("InvalidCommand", "jobId is required")
    assert peer.messages("settle") == []
    with client.get_queue_receiver("settle", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5) as dlq:
        (dead,) = dlq.receive_messages(max_message_count=1, max_wait_time=5)
        assert str(dead) == "poison"
        assert dead.dead_letter_reason == "InvalidCommand"
        assert dead.dead_letter_error_description == "jobId is required"
        assert dead.application_properties == {
            b"k": b"v",
            b"DeadLetterReason": b"InvalidCommand",
            b"DeadLetterErrorDescription": b"jobId is required",
        }
        dlq.complete_message(dead)
    assert peer.messages("settle/$DeadLetterQueue") == []


def test_defer_then_receive_deferred_and_complete(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("defer") as sender:
        sender.send_messages(ServiceBusMessage("later", message_id="defer-1"))
    with client.get_queue_receiver("defer", max_wait_time=2) as receiver:
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        seq = received.sequence_number
        assert seq is not None
        receiver.defer_message(received)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=1) == []
        (peeked,) = receiver.peek_messages(max_message_count=1, sequence_number=seq)
        assert peeked.state == ServiceBusMessageState.DEFERRED
        assert peer.messages("defer", "deferred")[0]["message_id"] == "defer-1"
        (deferred,) = receiver.receive_deferred_messages([seq])
        assert deferred.message_id == "defer-1"
        assert deferred.lock_token is not None
        receiver.renew_message_lock(deferred)
        receiver.complete_message(deferred)
    assert peer.messages("defer") == []


def test_batch_send_and_receive_and_delete(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("batch") as sender:
        batch = sender.create_message_batch()
        for i in range(25):
            batch.add_message(ServiceBusMessage(f"item-{i}", message_id=f"batch-{i}"))
        sender.send_messages(batch)
        sender.send_messages([ServiceBusMessage(b"x" * 200_000, message_id="large")])
    assert len(peer.messages("batch")) == 26
    received: list[str | None] = []
    with client.get_queue_receiver(
        "batch", receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=2
    ) as receiver:
        deadline = time.monotonic() + 20
        while len(received) < 26 and time.monotonic() < deadline:
            received += [m.message_id for m in receiver.receive_messages(max_message_count=30, max_wait_time=2)]
    assert received == [f"batch-{i}" for i in range(25)] + ["large"]
    assert peer.messages("batch") == []


def test_peek_does_not_lock(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("peek") as sender:
        sender.send_messages([ServiceBusMessage(f"p{i}", message_id=f"peek-{i}") for i in range(3)])
    with client.get_queue_receiver("peek", max_wait_time=2) as receiver:
        peeked = receiver.peek_messages(max_message_count=10)
        assert [m.message_id for m in peeked] == ["peek-0", "peek-1", "peek-2"]
        assert all(m.state == ServiceBusMessageState.ACTIVE for m in peeked)
        assert [m["state"] for m in peer.messages("peek")] == ["active"] * 3
        for message in receiver.receive_messages(max_message_count=3, max_wait_time=5):
            receiver.complete_message(message)
    assert peer.messages("peek") == []


def test_schedule_delivers_when_due_and_cancel_removes(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)  # opening and closing links takes ~2 s
    with client.get_queue_sender("schedule") as sender:
        kept, cancelled = sender.schedule_messages(
            [ServiceBusMessage("kept", message_id="sched-kept"), ServiceBusMessage("gone", message_id="sched-gone")],
            due,
        )
        sender.cancel_scheduled_messages(cancelled)
    (stored,) = peer.messages("schedule", "scheduled")
    assert stored["message_id"] == "sched-kept"
    assert stored["scheduled_enqueue_time"] == pytest.approx(due.timestamp(), abs=0.01)
    with client.get_queue_receiver("schedule", max_wait_time=1) as receiver:
        (peeked,) = receiver.peek_messages(max_message_count=5, sequence_number=kept)
        assert peeked.state == ServiceBusMessageState.SCHEDULED
        assert peeked.scheduled_enqueue_time_utc is not None
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
        assert dt.datetime.now(dt.UTC) < due  # so the empty receive above happened before the due time
        received = receiver.receive_messages(max_message_count=5, max_wait_time=5)
        assert dt.datetime.now(dt.UTC) >= due
        assert [m.message_id for m in received] == ["sched-kept"]
        receiver.complete_message(received[0])
    assert peer.messages("schedule") == []
