"""The same peer through the real async SDK (``azure.servicebus.aio``)."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from azure.servicebus import ServiceBusMessage, ServiceBusMessageState, ServiceBusSubQueue
from azure.servicebus.aio import ServiceBusClient

from emulators.servicebus import ServiceBusPeer

pytestmark = pytest.mark.slow


async def _settlements(connection_string: str) -> None:
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        async with client.get_queue_sender("async") as sender:
            await sender.send_messages([ServiceBusMessage(name, message_id=name) for name in ("ok", "dl", "later")])
            await sender.send_messages(ServiceBusMessage("retry", message_id="retry"))
        seen: dict[str, int] = {}
        deferred_seq = 0
        async with client.get_queue_receiver("async", max_wait_time=2) as receiver:
            async for message in receiver:
                name = str(message.message_id)
                seen[name] = seen.get(name, 0) + 1
                if name == "dl":
                    await receiver.dead_letter_message(message, reason="Bad", error_description="async")
                elif name == "later":
                    deferred_seq = message.sequence_number or 0
                    await receiver.defer_message(message)
                elif name == "retry" and message.delivery_count == 0:
                    await receiver.renew_message_lock(message)
                    await receiver.abandon_message(message)
                else:
                    await receiver.complete_message(message)
            assert seen == {"ok": 1, "dl": 1, "later": 1, "retry": 2}
            (peeked,) = await receiver.peek_messages(max_message_count=1, sequence_number=deferred_seq)
            assert peeked.state == ServiceBusMessageState.DEFERRED
            (deferred,) = await receiver.receive_deferred_messages([deferred_seq])
            await receiver.complete_message(deferred)
        async with client.get_queue_receiver("async", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
            (dead,) = await dlq.receive_messages(max_message_count=1, max_wait_time=5)
            assert (dead.message_id, dead.dead_letter_reason, dead.dead_letter_error_description) == (
                "dl",
                "Bad",
                "async",
            )
            await dlq.complete_message(dead)


async def _schedule_and_topic(connection_string: str) -> None:
    async with ServiceBusClient.from_connection_string(connection_string) as client:
        due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
        outcome: dict[str | bytes, Any] = {"decision": "deadLetter", "dryRun": True}  # not for "complex"
        async with client.get_topic_sender("events") as sender:
            kept, gone = await sender.schedule_messages(
                [
                    ServiceBusMessage("k", message_id="async-kept", application_properties=outcome),
                    ServiceBusMessage("g", message_id="async-gone", application_properties=outcome),
                ],
                due,
            )
            await sender.cancel_scheduled_messages(gone)
            await sender.send_messages(ServiceBusMessage("n", message_id="async-now"))
        assert kept > 0
        async with client.get_subscription_receiver("events", "all", max_wait_time=6) as receiver:
            received: list[str] = []
            async for message in receiver:
                received.append(str(message.message_id))
                await receiver.complete_message(message)
                if len(received) == 2:
                    break
        assert received == ["async-now", "async-kept"]
        assert dt.datetime.now(dt.UTC) >= due
        async with client.get_subscription_receiver("events", "deadletters", max_wait_time=2) as receiver:
            (only,) = await receiver.receive_messages(max_message_count=2, max_wait_time=2)
            assert only.message_id == "async-kept"
            await receiver.complete_message(only)


def test_async_settlements_deferral_and_dead_letter(peer: ServiceBusPeer) -> None:
    asyncio.run(asyncio.wait_for(_settlements(peer.connection_string), timeout=60))
    assert peer.messages("async") == []
    assert peer.messages("async/$DeadLetterQueue") == []


def test_async_topic_schedule_cancel_and_fan_out(peer: ServiceBusPeer) -> None:
    asyncio.run(asyncio.wait_for(_schedule_and_topic(peer.connection_string), timeout=60))
    assert peer.messages("events", "scheduled") == []
    assert peer.messages("events/Subscriptions/all") == []
    assert peer.messages("events/Subscriptions/deadletters") == []
