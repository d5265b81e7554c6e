"""A redrive keeps its rate cap, and a failure halfway loses nothing and doubles nothing."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusReceiver, ServiceBusSender
from azure.servicebus.exceptions import ServiceBusConnectionError

from cli.__main__ import main
from emulators.servicebus import ServiceBusPeer
from tests.cli.conftest import DLQ, QUEUE, Tool, dead_letter

TEN = [(f"cmd-{n:02}", "RetriesExhausted", "Batch kept answering 503") for n in range(10)]
OTHERS = [("inv-1", "InvalidCommand", "taskId is required"), ("inv-2", "InvalidCommand", "not JSON")]


def command_ids(messages: list[dict[str, Any]]) -> list[str]:
    """The command each stored message carries (a resend's id is <commandId>#redrive-<n>)."""
    return sorted(str(m["message_id"]).split("#")[0] for m in messages)


def assert_nothing_lost_nothing_doubled(peer: ServiceBusPeer, moved: int) -> None:
    queued, dead = command_ids(peer.messages(QUEUE)), command_ids(peer.messages(DLQ))
    assert len(queued) == len(set(queued)) == moved, f"doubled or missing in the queue: {queued}"
    assert sorted(set(queued) | {c for c in dead if c.startswith("cmd-")}) == [c for c, _, _ in TEN]
    assert sorted(c for c in dead if c.startswith("inv-")) == ["inv-1", "inv-2"]  # never touched


def test_the_rate_cap_holds_in_every_one_second_window(
    tool: Tool, client: ServiceBusClient, peer: ServiceBusPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letter(client, TEN + OTHERS)
    sends: list[float] = []
    real_send = ServiceBusSender.send_messages

    def timed_send(self: ServiceBusSender, message: Any, **kwargs: Any) -> None:
        sends.append(time.monotonic())
        real_send(self, message, **kwargs)

    monkeypatch.setattr(ServiceBusSender, "send_messages", timed_send)
    run = tool("dlq", "redrive", "--reason", "RetriesExhausted", "--rate", "5")
    assert run.code == 0, run.err
    assert len(sends) == 10
    # Count the sends in every window of one second that starts at a send (allowing 10 ms of clock jitter).
    per_window = [sum(1 for t in sends if start <= t < start + 0.99) for start in sends]
    assert max(per_window) <= 5, per_window
    assert sends[-1] - sends[0] >= 1.8 - 0.01  # 10 sends at 5/s: nine gaps of 0.2 s
    assert_nothing_lost_nothing_doubled(peer, moved=10)


def test_a_send_failure_halfway_leaves_the_unsent_in_the_dead_letter_queue(
    tool: Tool, client: ServiceBusClient, peer: ServiceBusPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letter(client, TEN + OTHERS)
    real_send = ServiceBusSender.send_messages
    calls = Counter[str]()

    def failing_send(self: ServiceBusSender, message: Any, **kwargs: Any) -> None:
        calls["send"] += 1
        if calls["send"] == 4:
            raise ServiceBusConnectionError(message="injected: the connection broke")
        real_send(self, message, **kwargs)

    monkeypatch.setattr(ServiceBusSender, "send_messages", failing_send)
    run = tool("dlq", "redrive", "--reason", "RetriesExhausted", "--rate", "0")
    assert run.code == 1
    assert "moved 3 of 10 selected messages (RetriesExhausted: 3)" in run.out
    assert "7 still in the dead-letter queue" in run.out
    [line] = run.err.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"error: cannot reach the local Service Bus peer at 127.0.0.1:{peer.port}: injected")
    assert_nothing_lost_nothing_doubled(peer, moved=3)
    assert all(m["state"] == "active" for m in peer.messages(DLQ)), [
        (m["sequence_number"], m["state"], m["delivery_count"]) for m in peer.messages(DLQ)
    ]  # the held ones were abandoned

    monkeypatch.setattr(ServiceBusSender, "send_messages", real_send)
    again = tool("dlq", "redrive", "--reason", "RetriesExhausted")
    assert again.code == 0, again.err
    assert "moved 7 of 7" in again.out
    assert_nothing_lost_nothing_doubled(peer, moved=10)


def test_a_resend_whose_removal_failed_is_not_doubled_by_the_next_redrive(
    tool: Tool, client: ServiceBusClient, peer: ServiceBusPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    dead_letter(client, TEN + OTHERS)
    real_complete = ServiceBusReceiver.complete_message
    calls = Counter[str]()

    def failing_complete(self: ServiceBusReceiver, message: Any) -> None:
        calls["complete"] += 1
        if calls["complete"] == 3:  # the third resend went out, its dead-letter stays
            raise ServiceBusConnectionError(message="injected: the connection broke")
        real_complete(self, message)

    monkeypatch.setattr(ServiceBusReceiver, "complete_message", failing_complete)
    run = tool("dlq", "redrive", "--reason", "RetriesExhausted", "--rate", "0")
    assert run.code == 1
    assert "moved 2 of 10" in run.out
    assert (
        "resent seq=" in run.out and "cmd-02 as cmd-02#redrive-1, but it is still in the dead-letter queue" in run.out
    )
    queued = command_ids(peer.messages(QUEUE))
    assert queued == ["cmd-00", "cmd-01", "cmd-02"]
    assert "cmd-02" in command_ids(peer.messages(DLQ))  # sent, not yet removed

    monkeypatch.setattr(ServiceBusReceiver, "complete_message", real_complete)
    again = tool("dlq", "redrive", "--reason", "RetriesExhausted")
    assert again.code == 0, again.err
    assert_nothing_lost_nothing_doubled(peer, moved=10)  # cmd-02's repeat was dropped as a duplicate


@pytest.fixture
def file_peer(tmp_path: Path) -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer(port=0, db_path=str(tmp_path / "peer.db")) as running:
        yield running


def test_stopping_the_peer_mid_redrive_loses_and_doubles_nothing(
    file_peer: ServiceBusPeer, capsys: pytest.CaptureFixture[str]
) -> None:
    peer = file_peer
    with ServiceBusClient.from_connection_string(peer.connection_string) as client:
        dead_letter(client, TEN + OTHERS)
    result: dict[str, int] = {}
    argv = [
        "dlq",
        "redrive",
        "--reason",
        "RetriesExhausted",
        "--rate",
        "4",
        "--connection-string",
        peer.connection_string,
    ]
    redrive = threading.Thread(target=lambda: result.setdefault("code", main(argv)))
    redrive.start()
    deadline = time.monotonic() + 30
    while len(peer.messages(QUEUE)) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    peer.stop()  # mid-redrive: some resent, the rest not
    redrive.join(timeout=60)
    assert not redrive.is_alive()
    first = capsys.readouterr()
    assert result["code"] == 1
    assert first.err.startswith("error: ") and "Traceback" not in first.err

    peer.start()  # same port, same database: what was acknowledged is kept
    moved = len(peer.messages(QUEUE))
    assert 3 <= moved < 10
    queued, dead = command_ids(peer.messages(QUEUE)), command_ids(peer.messages(DLQ))
    assert len(queued) == len(set(queued))
    assert set(queued) | set(dead) >= {c for c, _, _ in TEN}  # nothing lost

    again = main(["dlq", "redrive", "--reason", "RetriesExhausted", "--connection-string", peer.connection_string])
    assert again == 0, capsys.readouterr().err
    assert_nothing_lost_nothing_doubled(peer, moved=10)
