"""Time and repetition through the real sync SDK: locks, MaxDeliveryCount, TTL, duplicate detection."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.servicebus.exceptions import MessageLockLostError

from emulators.servicebus import ServiceBusPeer

pytestmark = pytest.mark.slow


def wait_for(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_lock_renewal_extends_and_expiry_redelivers(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("short-lock") as sender:
        sender.send_messages(ServiceBusMessage("slow work", message_id="lock-1"))
    with client.get_queue_receiver("short-lock", max_wait_time=5) as receiver:
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        first_until = received.locked_until_utc
        assert first_until is not None
        time.sleep(0.6)
        renewed = receiver.renew_message_lock(received)
        assert renewed > first_until
        time.sleep(0.6)  # past the first lock's end, inside the renewed one
        receiver.complete_message(received)
    assert peer.messages("short-lock") == []

    with client.get_queue_sender("short-lock") as sender:
        sender.send_messages(ServiceBusMessage("abandoned by a crash", message_id="lock-2"))
    with client.get_queue_receiver("short-lock", max_wait_time=5) as receiver:
        (held,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        wait_for(lambda: peer.messages("short-lock")[0]["state"] != "locked")
        assert peer.messages("short-lock")[0]["delivery_count"] == 1
        with pytest.raises(MessageLockLostError):
            receiver.complete_message(held)
        with pytest.raises(MessageLockLostError):
            receiver.renew_message_lock(held)
        (again,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        assert (again.message_id, again.delivery_count) == ("lock-2", 1)
        receiver.complete_message(again)
    assert peer.messages("short-lock") == []


def test_max_delivery_count_dead_letters(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("max-delivery") as sender:
        sender.send_messages(ServiceBusMessage("always fails", message_id="mdc-1"))
    with client.get_queue_receiver("max-delivery", max_wait_time=2) as receiver:
        for expected_count in (0, 1):
            (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
            assert received.delivery_count == expected_count
            receiver.abandon_message(received)
        assert receiver.receive_messages(max_message_count=1, max_wait_time=0.5) == []
    assert peer.messages("max-delivery") == []
    (dead,) = peer.messages("max-delivery/$DeadLetterQueue")
    assert dead["message_id"] == "mdc-1"
    assert dead["dead_letter_reason"] == "MaxDeliveryCountExceeded"
    assert dead["delivery_count"] == 2


def test_ttl_expiry_dead_letters_or_drops(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("ttl-dlq") as to_dlq, client.get_queue_sender("ttl-drop") as to_drop:
        to_dlq.send_messages(ServiceBusMessage("stale", message_id="ttl-1", time_to_live=dt.timedelta(seconds=1)))
        to_dlq.send_messages(ServiceBusMessage("fresh", message_id="ttl-2"))
        to_drop.send_messages(ServiceBusMessage("stale", message_id="ttl-3"))  # queue default TTL is 1 s
    wait_for(lambda: peer.messages("ttl-dlq/$DeadLetterQueue") != [] and peer.messages("ttl-drop") == [])
    assert [m["message_id"] for m in peer.messages("ttl-dlq")] == ["ttl-2"]
    (expired,) = peer.messages("ttl-dlq/$DeadLetterQueue")
    assert (expired["message_id"], expired["dead_letter_reason"]) == ("ttl-1", "TTLExpiredException")
    assert peer.messages("ttl-drop/$DeadLetterQueue") == []
    with client.get_queue_receiver("ttl-dlq", max_wait_time=2) as receiver:
        (fresh,) = receiver.receive_messages(max_message_count=2, max_wait_time=2)
        assert fresh.message_id == "ttl-2"
        receiver.complete_message(fresh)


def test_duplicate_detection_within_window(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_queue_sender("dedup") as sender:
        sender.send_messages(ServiceBusMessage("first", message_id="same"))
        sender.send_messages(ServiceBusMessage("second", message_id="same"))
        sender.send_messages(
            [ServiceBusMessage("third", message_id="same"), ServiceBusMessage("x", message_id="other")]
        )
        sender.schedule_messages(ServiceBusMessage("fourth", message_id="same"), dt.datetime.now(dt.UTC))
    stored = peer.messages("dedup")
    assert [(m["message_id"], m["body"]) for m in stored] == [("same", b"first"), ("other", b"x")]
    with client.get_queue_receiver("dedup", max_wait_time=2) as receiver:
        for message in receiver.receive_messages(max_message_count=3, max_wait_time=2):
            receiver.complete_message(message)
    with client.get_queue_sender("dedup") as sender:  # still inside the 10 minute window once consumed
        sender.send_messages(ServiceBusMessage("fifth", message_id="same"))
    assert peer.messages("dedup") == []
