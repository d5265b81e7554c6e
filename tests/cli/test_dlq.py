"""``dlq list``, ``dlq redrive`` and ``dlq purge`` against dead-letters made the way the processor makes them."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from emulators.servicebus import ServiceBusPeer
from tests.cli.conftest import DLQ, QUEUE, Tool, dead_letter, properties_of

MIXED = [
    ("rx-1", "RetriesExhausted", "Batch kept answering 503 ServerBusy; 8 attempts"),
    ("inv-1", "InvalidCommand", "taskId is required for terminateTask"),
    ("rx-2", "RetriesExhausted", "Batch kept answering 503 ServerBusy; 8 attempts"),
    ("inv-2", "InvalidCommand", "body is not valid JSON (Expecting value at position 0)"),
    ("pf-1", "ProcessingFailed", "the outcome could not be built"),
    ("rx-3", "RetriesExhausted", "Batch timed out; 8 attempts"),
]


def ids(messages: list[dict[str, Any]]) -> list[str]:
    return sorted(str(m["message_id"]) for m in messages)


@pytest.fixture
def mixed(client: ServiceBusClient) -> None:
    dead_letter(client, MIXED, attempt="8")


def test_list_groups_by_reason_with_counts_and_descriptions(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    run = tool("dlq", "list")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0] == f"{DLQ}: 6 messages"
    assert lines[1].split()[:2] == ["3", "RetriesExhausted"]
    assert "2 x Batch kept answering 503 ServerBusy; 8 attempts" in run.out
    assert "1 x Batch timed out; 8 attempts" in run.out
    assert "e.g. commandId rx-1, rx-2, rx-3" in run.out
    groups = [line.split()[:2] for line in lines[1:] if line.split()[0].isdigit() and line.split()[1] != "x"]
    assert groups == [
        ["3", "RetriesExhausted"],
        ["2", "InvalidCommand"],
        ["1", "ProcessingFailed"],
    ]
    assert len(peer.messages(DLQ)) == 6  # browsing takes nothing
    assert all(m["state"] == "active" and m["delivery_count"] == 0 for m in peer.messages(DLQ))


def test_list_as_json_with_every_message(tool: Tool, mixed: None) -> None:
    run = tool("dlq", "list", "--json", "--messages")
    assert run.code == 0, run.err
    document = json.loads(run.out)
    assert document["total"] == 6
    reasons = {group["reason"]: group for group in document["reasons"]}
    assert {name: group["count"] for name, group in reasons.items()} == {
        "RetriesExhausted": 3,
        "InvalidCommand": 2,
        "ProcessingFailed": 1,
    }
    assert reasons["RetriesExhausted"]["descriptions"][0] == {
        "description": "Batch kept answering 503 ServerBusy; 8 attempts",
        "count": 2,
    }
    assert [m["commandId"] for m in document["messages"]] == [c for c, _, _ in MIXED]


def test_list_of_an_empty_dead_letter_queue(tool: Tool) -> None:
    run = tool("dlq", "list")
    assert (run.code, run.out) == (0, f"{DLQ}: 0 messages\n")


def test_redrive_of_one_reason_leaves_the_others(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    before = {m["message_id"]: m for m in peer.messages(DLQ)}
    run = tool("dlq", "redrive", "--reason", "RetriesExhausted")
    assert run.code == 0, run.err
    assert "moved 3 of 3 selected messages (RetriesExhausted: 3)" in run.out
    queued = peer.messages(QUEUE)
    assert ids(queued) == ["rx-1#redrive-1", "rx-2#redrive-1", "rx-3#redrive-1"]
    for message in queued:
        original = before[message["message_id"].split("#")[0]]
        assert message["body"] == original["body"]  # byte for byte
        properties = properties_of(message)
        assert "attempt" not in properties  # the attempt count starts again
        assert "DeadLetterReason" not in properties and "DeadLetterErrorDescription" not in properties
        assert properties["commandId"] == original["message_id"]
    left = peer.messages(DLQ)
    assert ids(left) == ["inv-1", "inv-2", "pf-1"]
    assert all(m["state"] == "active" for m in left)  # abandoned, not locked
    assert {m["message_id"]: m["body"] for m in left} == {k: v["body"] for k, v in before.items() if k in ids(left)}


def test_redrive_by_command_id_and_of_everything(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    one = tool("dlq", "redrive", "--command-id", "inv-2")
    assert one.code == 0, one.err
    assert ids(peer.messages(QUEUE)) == ["inv-2#redrive-1"]
    everything = tool("dlq", "redrive", "--all", "--rate", "0")
    assert everything.code == 0, everything.err
    assert "moved 5 of 5" in everything.out
    assert len(peer.messages(QUEUE)) == 6
    assert peer.messages(DLQ) == []


def test_reason_and_command_id_together_must_both_match(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    run = tool("dlq", "redrive", "--reason", "InvalidCommand", "--command-id", "rx-1", "--command-id", "inv-1")
    assert run.code == 0, run.err
    assert ids(peer.messages(QUEUE)) == ["inv-1#redrive-1"]


def test_redrive_dry_run_changes_nothing(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    run = tool("dlq", "redrive", "--reason", "InvalidCommand", "--dry-run")
    assert run.code == 0, run.err
    assert "would move seq=" in run.out
    assert "inv-1 -> inv-1#redrive-1" in run.out
    assert "dry run: would move 2 messages (InvalidCommand: 2)" in run.out
    assert peer.messages(QUEUE) == []
    assert len(peer.messages(DLQ)) == 6
    assert all(m["delivery_count"] == 0 for m in peer.messages(DLQ))  # not even received


def test_redrive_needs_a_selection(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    run = tool("dlq", "redrive")
    assert run.code == 64
    assert "--reason R, --command-id ID or --all" in run.err
    assert tool("dlq", "redrive", "--all", "--reason", "X").code == 64
    assert len(peer.messages(DLQ)) == 6


def test_redrive_of_nothing(tool: Tool, mixed: None) -> None:
    run = tool("dlq", "redrive", "--reason", "NoSuchReason")
    assert run.code == 0
    assert "nothing to move" in run.out


def test_redrive_max_moves_the_oldest_first(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    run = tool("dlq", "redrive", "--reason", "RetriesExhausted", "--max", "2", "--json")
    assert run.code == 0, run.err
    summary = json.loads(run.out)
    assert [m["newMessageId"] for m in summary["moved"]] == ["rx-1#redrive-1", "rx-2#redrive-1"]
    assert "rx-3" in ids(peer.messages(DLQ))


def test_a_command_without_a_command_id_field_keeps_its_id(
    tool: Tool, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    dead_letter(client, [("legacy-7", "RetriesExhausted", "gave up")], body_command_id=False)
    assert tool("dlq", "redrive", "--all").code == 0
    [message] = peer.messages(QUEUE)
    assert message["message_id"] == "legacy-7#redrive-1"
    assert message["application_properties"]["redrive"] == 1
    body = json.loads(message["body"])
    assert body == {"action": "terminateTask", "jobId": "job-1", "taskId": "t1", "commandId": "legacy-7"}


def test_a_redriven_message_that_dies_again_gets_the_next_generation(
    tool: Tool, client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    dead_letter(client, [("again-1", "RetriesExhausted", "gave up")])
    assert tool("dlq", "redrive", "--all").code == 0
    with client.get_queue_receiver(QUEUE) as receiver:  # the processor dead-letters the resend again
        [message] = receiver.receive_messages(max_message_count=1, max_wait_time=5)
        receiver.dead_letter_message(message, reason="RetriesExhausted", error_description="still failing")
    assert tool("dlq", "redrive", "--all").code == 0
    [resent] = peer.messages(QUEUE)
    assert resent["message_id"] == "again-1#redrive-2"
    # The processor gives generation 2 ids of its own, so duplicate detection cannot drop its copies or outcomes.
    assert resent["application_properties"]["redrive"] == 2


def test_purge_refuses_without_a_terminal_or_yes(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    run = tool("dlq", "purge")
    assert run.code == 1
    assert "refusing to purge without confirmation" in run.err
    assert "--yes" in run.err
    assert len(peer.messages(DLQ)) == 6


def test_purge_of_one_reason_with_yes(tool: Tool, mixed: None, peer: ServiceBusPeer) -> None:
    run = tool("dlq", "purge", "--reason", "InvalidCommand", "--yes")
    assert run.code == 0, run.err
    assert "purged 2 of 2 selected message(s) (InvalidCommand: 2)" in run.out
    assert ids(peer.messages(DLQ)) == ["pf-1", "rx-1", "rx-2", "rx-3"]
    assert peer.messages(QUEUE) == []


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("answer", "code", "left"), [("y\n", 0, 0), ("n\n", 1, 6), ("\n", 1, 6)])
def test_purge_asks_at_a_terminal(
    *, tool: Tool, mixed: None, peer: ServiceBusPeer, monkeypatch: pytest.MonkeyPatch, answer: str, code: int, left: int
) -> None:
    monkeypatch.setattr("sys.stdin", _Terminal(answer))
    run = tool("dlq", "purge")
    assert run.code == code, run.err
    assert "Delete 6 message(s) (RetriesExhausted: 3, InvalidCommand: 2, ProcessingFailed: 1)" in run.err
    assert len(peer.messages(DLQ)) == left
