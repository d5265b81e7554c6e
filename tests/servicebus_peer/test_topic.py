"""Topics through the real sync SDK: fan-out by subscription rules, scheduling, subscription DLQs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceiveMode, ServiceBusSubQueue

from emulators.servicebus import ServiceBusPeer

pytestmark = pytest.mark.slow

SUBSCRIPTIONS = ("all", "deadletters", "correlated", "complex")


def outcome(message_id: str, subject: str | None = None, **properties: str | int | bool) -> ServiceBusMessage:
    props: dict[str | bytes, Any] = {key: value for key, value in properties.items()}
    return ServiceBusMessage(message_id, message_id=message_id, subject=subject, application_properties=props)


def ids(peer: ServiceBusPeer, subscription: str) -> list[str]:
    return [m["message_id"] for m in peer.messages(f"events/Subscriptions/{subscription}")]


def drain(client: ServiceBusClient, subscription: str, expected: int) -> list[str]:
    with client.get_subscription_receiver(
        "events", subscription, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE, max_wait_time=2
    ) as receiver:
        received = receiver.receive_messages(max_message_count=expected + 1, max_wait_time=2)
    return [str(m.message_id) for m in received]


@pytest.fixture(autouse=True)
def empty_subscriptions(client: ServiceBusClient, peer: ServiceBusPeer) -> Iterator[None]:
    """Each test starts with empty subscriptions: whatever one leaves behind is received and deleted."""
    yield
    for subscription in SUBSCRIPTIONS:
        left = ids(peer, subscription)
        if left:
            drain(client, subscription, len(left))


def test_fan_out_follows_sql_and_correlation_rules(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_topic_sender("events") as sender:
        sender.send_messages(
            [
                outcome("o-succeeded", "outcome", decision="succeeded", account="prod"),
                outcome("o-dead", "outcome", decision="deadLetter", account="dev"),
                outcome("o-dead-dry", decision="deadLetter", dryRun=True),
                outcome("o-retry", decision="retry"),
                outcome("forced"),
                outcome("o-priority", priority=9),
                outcome("o-priority-one", priority=1),
            ]
        )
    everything = ["o-succeeded", "o-dead", "o-dead-dry", "o-retry", "forced", "o-priority", "o-priority-one"]
    assert ids(peer, "all") == everything
    assert ids(peer, "deadletters") == ["o-dead", "o-dead-dry"]
    assert ids(peer, "correlated") == ["o-succeeded"]
    assert ids(peer, "complex") == ["o-dead", "o-retry", "forced", "o-priority"]
    assert drain(client, "deadletters", 2) == ["o-dead", "o-dead-dry"]
    assert drain(client, "all", 7) == everything


def test_topic_duplicate_detection_drops_repeats(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_topic_sender("events") as sender:
        sender.send_messages(outcome("dup-1", decision="deadLetter"))
        sender.send_messages(outcome("dup-1", decision="deadLetter"))
    assert ids(peer, "deadletters") == ["dup-1"]
    assert drain(client, "deadletters", 1) == ["dup-1"]
    assert drain(client, "all", 1) == ["dup-1"]


def test_topic_schedule_and_cancel(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
    with client.get_topic_sender("events") as sender:
        (kept,) = sender.schedule_messages(outcome("sched-kept", decision="deadLetter"), due)
        (gone,) = sender.schedule_messages(outcome("sched-gone", decision="deadLetter"), due)
        sender.cancel_scheduled_messages(gone)
    assert [m["message_id"] for m in peer.messages("events", "scheduled")] == ["sched-kept"]
    assert kept > 0
    with client.get_subscription_receiver("events", "deadletters", max_wait_time=5) as receiver:
        received = receiver.receive_messages(max_message_count=2, max_wait_time=6)
        assert dt.datetime.now(dt.UTC) >= due
        assert [m.message_id for m in received] == ["sched-kept"]
        receiver.complete_message(received[0])
    assert drain(client, "all", 1) == ["sched-kept"]
    assert peer.messages("events") == []


def test_subscription_dead_letter_queue(client: ServiceBusClient, peer: ServiceBusPeer) -> None:
    with client.get_topic_sender("events") as sender:
        sender.send_messages(outcome("sub-dl", decision="deadLetter"))
    with client.get_subscription_receiver("events", "deadletters", max_wait_time=5) as receiver:
        (received,) = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.dead_letter_message(received, reason="Unprocessable", error_description="no handler")
    (stored,) = peer.messages("events/Subscriptions/deadletters/$DeadLetterQueue")
    assert stored["dead_letter_reason"] == "Unprocessable"
    with client.get_subscription_receiver(
        "events", "deadletters", sub_queue=ServiceBusSubQueue.DEAD_LETTER, max_wait_time=5
    ) as dlq:
        (dead,) = dlq.receive_messages(max_message_count=1, max_wait_time=5)
        assert (dead.message_id, dead.dead_letter_reason) == ("sub-dl", "Unprocessable")
        assert dead.dead_letter_error_description == "no handler"
        dlq.complete_message(dead)
    assert peer.messages("events/Subscriptions/deadletters/$DeadLetterQueue") == []
