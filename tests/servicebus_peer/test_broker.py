"""Broker rules that are slow or impossible to reach through the SDK, driven with a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from proton import Message, symbol, timestamp

from emulators.servicebus.broker import BadRequest, Broker, EntityNotFound, LockLost, MessageNotFound
from emulators.servicebus.config import load_config
from emulators.servicebus.store import Store

CONFIG: dict[str, Any] = {
    "UserConfig": {
        "Namespaces": [
            {
                "Name": "ns",
                "Queues": [
                    {"Name": "q", "Properties": {"LockDuration": "PT10S", "MaxDeliveryCount": 3}},
                    {"Name": "other", "Properties": {}},
                    {
                        "Name": "dedup",
                        "Properties": {
                            "RequiresDuplicateDetection": True,
                            "DuplicateDetectionHistoryTimeWindow": "PT60S",
                        },
                    },
                ],
                "Topics": [
                    {
                        "Name": "t",
                        "Properties": {"DefaultMessageTimeToLive": "PT100S"},
                        "Subscriptions": [
                            {"Name": "short", "Properties": {"DefaultMessageTimeToLive": "PT5S"}},
                            {"Name": "long", "Properties": {"DeadLetteringOnMessageExpiration": True}},
                        ],
                    }
                ],
            }
        ]
    }
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def broker(clock: Clock) -> Broker:
    return Broker(load_config(CONFIG), Store(":memory:"), clock)


def encoded(message_id: str, ttl: float | None = None, scheduled_at: float | None = None) -> bytes:
    message = Message(body=message_id, id=message_id)
    if ttl is not None:
        message.ttl = ttl
    if scheduled_at is not None:
        message.annotations = {symbol("x-opt-scheduled-enqueue-time"): timestamp(int(scheduled_at * 1000))}
    return bytes(message.encode())


def ids(broker: Broker, path: str) -> list[str]:
    return [m["message_id"] for m in broker.inspect(path)]


def test_subscription_ttl_is_the_shortest_of_message_topic_and_subscription(broker: Broker, clock: Clock) -> None:
    queue_like = broker.resolve("t")
    broker.send(queue_like, [encoded("plain"), encoded("brief", ttl=2)])
    expiries = {
        path: {m["message_id"]: m["expires_at"] - clock.now for m in broker.inspect(f"t/Subscriptions/{path}")}
        for path in ("short", "long")
    }
    assert expiries == {"short": {"plain": 5, "brief": 2}, "long": {"plain": 100, "brief": 2}}
    assert broker.next_deadline() == clock.now + 2
    clock.now += 6
    broker.sweep()
    assert ids(broker, "t/Subscriptions/short") == []
    assert ids(broker, "t/Subscriptions/long") == ["plain"]
    assert ids(broker, "t/Subscriptions/long/$DeadLetterQueue") == ["brief"]


def test_locked_message_expires_only_after_its_lock(broker: Broker, clock: Clock) -> None:
    q = broker.resolve("q")
    broker.send(q, [encoded("m", ttl=1)])
    (delivery,) = broker.receive(q, 5, peek_lock=True)
    clock.now += 5  # TTL passed, lock (10 s) still held
    broker.sweep()
    assert [m["state"] for m in broker.inspect("q")] == ["locked"]
    broker.complete(q, delivery.lock_token)
    assert ids(broker, "q") == []


def test_lock_expiry_counts_towards_max_delivery_count(broker: Broker, clock: Clock) -> None:
    q = broker.resolve("q")
    broker.send(q, [encoded("m")])
    for _ in range(3):
        assert len(broker.receive(q, 1, peek_lock=True)) == 1
        clock.now += 11
        broker.sweep()
    assert ids(broker, "q") == []
    (dead,) = broker.inspect("q/$DeadLetterQueue")
    assert (dead["dead_letter_reason"], dead["delivery_count"]) == ("MaxDeliveryCountExceeded", 3)


def test_locks_are_scoped_to_their_entity(broker: Broker) -> None:
    q, other = broker.resolve("q"), broker.resolve("other")
    broker.send(q, [encoded("m")])
    (delivery,) = broker.receive(q, 1, peek_lock=True)
    with pytest.raises(LockLost):
        broker.complete(other, delivery.lock_token)
    with pytest.raises(LockLost):
        broker.complete(broker.resolve("q/$DeadLetterQueue"), delivery.lock_token)
    broker.complete(q, delivery.lock_token)
    with pytest.raises(LockLost):
        broker.complete(q, delivery.lock_token)


def test_dead_letter_queue_messages_cannot_be_dead_lettered_again(broker: Broker) -> None:
    q, dlq = broker.resolve("q"), broker.resolve("q/$DeadLetterQueue")
    broker.send(q, [encoded("m")])
    (first,) = broker.receive(q, 1, peek_lock=True)
    broker.dead_letter(q, first.lock_token, "Reason", "Description")
    (again,) = broker.receive(dlq, 1, peek_lock=True)
    with pytest.raises(BadRequest):
        broker.dead_letter(dlq, again.lock_token, "Again", None)
    assert ids(broker, "q/$DeadLetterQueue") == ["m"]


def test_receive_deferred_requires_deferred_unlocked_messages(broker: Broker) -> None:
    q = broker.resolve("q")
    (seq,) = broker.send(q, [encoded("m")])
    with pytest.raises(MessageNotFound):
        broker.receive_deferred(q, [seq], peek_lock=True)  # active, not deferred
    (delivery,) = broker.receive(q, 1, peek_lock=True)
    broker.defer(q, delivery.lock_token)
    (deferred,) = broker.receive_deferred(q, [seq], peek_lock=True)
    with pytest.raises(MessageNotFound):
        broker.receive_deferred(q, [seq], peek_lock=True)  # already locked
    broker.abandon(q, deferred.lock_token)
    assert [(m["state"], m["delivery_count"]) for m in broker.inspect("q")] == [("deferred", 1)]


def test_scheduled_topic_message_fans_out_when_due(broker: Broker, clock: Clock) -> None:
    t = broker.resolve("t")
    (seq,) = broker.send(t, [encoded("later", scheduled_at=clock.now + 30)])
    assert ids(broker, "t") == ["later"] and ids(broker, "t/Subscriptions/long") == []
    assert broker.next_deadline() == clock.now + 30
    clock.now += 31
    broker.sweep()
    assert ids(broker, "t") == []
    assert ids(broker, "t/Subscriptions/short") == ids(broker, "t/Subscriptions/long") == ["later"]
    assert broker.take_ready() == {("t/Subscriptions/short", False), ("t/Subscriptions/long", False)}
    assert seq > 0


def test_duplicate_window_expires(broker: Broker, clock: Clock) -> None:
    dedup = broker.resolve("dedup")
    broker.send(dedup, [encoded("m"), encoded("m")])
    clock.now += 59
    broker.send(dedup, [encoded("m")])
    assert ids(broker, "dedup") == ["m"]
    clock.now += 2  # 61 s after the first send: the id is forgotten
    broker.sweep()
    broker.send(dedup, [encoded("m")])
    assert ids(broker, "dedup") == ["m", "m"]


@pytest.mark.parametrize("path", ["nope", "t/$DeadLetterQueue", "t/Subscriptions/nope", "q/$Transfer/$DeadLetterQueue"])
def test_unknown_nodes_are_not_found(broker: Broker, path: str) -> None:
    with pytest.raises(EntityNotFound):
        broker.resolve(path)


def test_cannot_send_to_subscriptions_or_dead_letter_queues(broker: Broker) -> None:
    for path in ("t/Subscriptions/long", "q/$DeadLetterQueue"):
        with pytest.raises(BadRequest):
            broker.send(broker.resolve(path), [encoded("m")])
