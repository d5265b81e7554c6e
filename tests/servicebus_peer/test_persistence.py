"""A file database keeps everything the peer acknowledged across a restart."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusSubQueue

from emulators.servicebus import ServiceBusPeer

from .conftest import TEST_CONFIG

pytestmark = pytest.mark.slow


def states(peer: ServiceBusPeer, entity: str) -> dict[str, str]:
    return {m["message_id"]: m["state"] for m in peer.messages(entity)}


def test_restart_with_file_database_loses_nothing_acknowledged(tmp_path: Path) -> None:
    db = str(tmp_path / "servicebus.db")
    peer = ServiceBusPeer(TEST_CONFIG, db_path=db).start()
    try:
        with ServiceBusClient.from_connection_string(peer.connection_string) as client:
            with client.get_queue_sender("persist") as sender:
                sender.send_messages([ServiceBusMessage(name, message_id=name) for name in "abcd"])
                later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                sender.schedule_messages(ServiceBusMessage("e", message_id="e"), later)
            with client.get_queue_receiver("persist", max_wait_time=5) as receiver:
                a, b, c, d = receiver.receive_messages(max_message_count=4, max_wait_time=5)
                receiver.complete_message(a)
                receiver.dead_letter_message(b, reason="Broken", error_description="kept across restarts")
                receiver.defer_message(c)
                assert d.message_id == "d"  # received but never settled: its lock dies with the peer
        assert states(peer, "persist") == {"c": "deferred", "d": "locked", "e": "scheduled"}
        peer.restart()
        assert states(peer, "persist") == {"c": "deferred", "d": "active", "e": "scheduled"}
    finally:
        peer.stop()
    assert peer.errors == []

    with ServiceBusPeer(TEST_CONFIG, db_path=db) as reopened:
        assert states(reopened, "persist") == {"c": "deferred", "d": "active", "e": "scheduled"}
        with ServiceBusClient.from_connection_string(reopened.connection_string) as client:
            with client.get_queue_receiver("persist", max_wait_time=5) as receiver:
                (again,) = receiver.receive_messages(max_message_count=2, max_wait_time=3)
                assert (again.message_id, str(again)) == ("d", "d")
                receiver.complete_message(again)
                (deferred,) = receiver.receive_deferred_messages([c.sequence_number or 0])
                receiver.complete_message(deferred)
            with client.get_queue_receiver("persist", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as dlq:
                (dead,) = dlq.receive_messages(max_message_count=1, max_wait_time=5)
                assert (dead.message_id, dead.dead_letter_reason) == ("b", "Broken")
                dlq.complete_message(dead)
        assert states(reopened, "persist") == {"e": "scheduled"}
        assert reopened.errors == []
