"""``send``: every action, every contract field, selectors, local validation and the raw mode."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from emulators.servicebus import ServiceBusPeer
from tests.cli.conftest import QUEUE, Tool, peek_queue, properties_of

TRACEPARENT = re.compile(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01")


def queued(peer: ServiceBusPeer) -> list[dict[str, Any]]:
    return peer.messages(QUEUE)


def only_body(peer: ServiceBusPeer) -> dict[str, Any]:
    [message] = queued(peer)
    body: dict[str, Any] = json.loads(message["body"])
    return body


@pytest.mark.parametrize(
    ("action", "target", "expected"),
    [
        ("terminateTask", ["--job", "job-1", "--task", "t1"], {"jobId": "job-1", "taskId": "t1"}),
        ("deleteTask", ["--job", "job-1", "--task", "t1"], {"jobId": "job-1", "taskId": "t1"}),
        ("reactivateTask", ["--job", "job-1", "--task", "t1"], {"jobId": "job-1", "taskId": "t1"}),
        ("terminateJob", ["--job", "job-1"], {"jobId": "job-1"}),
        ("deleteJob", ["--job", "job-1"], {"jobId": "job-1"}),
    ],
)
def test_every_action_is_sent_with_message_id_equal_to_command_id(
    *,
    tool: Tool,
    peer: ServiceBusPeer,
    client: ServiceBusClient,
    action: str,
    target: list[str],
    expected: dict[str, Any],
) -> None:
    run = tool("send", action, *target, "--command-id", f"cmd-{action}")
    assert run.code == 0, run.err
    assert f"message_id=cmd-{action}" in run.out
    body = only_body(peer)
    assert body == {"action": action, **expected, "commandId": f"cmd-{action}", "requestedBy": body["requestedBy"]}
    assert body["requestedBy"].startswith("batch-lifecycle (")
    [message] = peek_queue(client)
    assert message.message_id == f"cmd-{action}"
    assert message.correlation_id == f"cmd-{action}"
    assert message.subject == action
    assert message.content_type == "application/json"
    properties = properties_of(queued(peer)[0])
    assert properties["commandId"] == f"cmd-{action}"
    assert TRACEPARENT.fullmatch(properties["traceparent"])
    assert properties["Diagnostic-Id"] == properties["traceparent"]


def test_every_contract_field_has_a_flag(tool: Tool, peer: ServiceBusPeer) -> None:
    run = tool(
        "send", "terminateJob", "--job", "render-7", "--account", "prod", "--reason", "done", "--force",
        "--if-match", "0x8D4125FD1A825A4", "--dry-run", "--command-id", "ops-1", "--requested-by", "oncall@contoso",
        "--traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert only_body(peer) == {
        "action": "terminateJob",
        "jobId": "render-7",
        "account": "prod",
        "reason": "done",
        "ifMatch": "0x8D4125FD1A825A4",
        "force": True,
        "dryRun": True,
        "commandId": "ops-1",
        "requestedBy": "oncall@contoso",
    }
    assert properties_of(queued(peer)[0])["traceparent"] == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert "trace=0af7651916cd43dd8448eb211c80319c" in run.out


def test_if_unmodified_since_and_a_generated_command_id(tool: Tool, peer: ServiceBusPeer) -> None:
    since = "Sun, 06 Nov 1994 08:49:37 GMT"
    run = tool("send", "deleteTask", "--job", "j", "--task", "t", "--if-unmodified-since", since, "--json")
    assert run.code == 0, run.err
    sent = json.loads(run.out)
    body = only_body(peer)
    assert body["ifUnmodifiedSince"] == since
    assert sent["body"] == body
    assert sent["messageId"] == sent["commandId"] == body["commandId"] == queued(peer)[0]["message_id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", body["commandId"])


def test_a_command_the_contract_refuses_is_not_sent(tool: Tool, peer: ServiceBusPeer) -> None:
    run = tool(
        "send", "terminateTask", "--job", "job 1", "--reason", "x", "--if-match", "e", "--if-unmodified-since", "x"
    )
    assert run.code == 1
    assert run.err.startswith("error: the command breaks the contract, nothing was sent: ")
    for problem in ("jobId 'job 1' is invalid", "taskId is required", "reason applies to terminateJob only"):
        assert problem in run.err
    assert "at most one of ifMatch and ifUnmodifiedSince" in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert queued(peer) == []


def test_selector_fields_are_passed_through_for_the_server_to_check(tool: Tool, peer: ServiceBusPeer) -> None:
    run = tool(
        "send", "deleteTask", "--job-select", '{"idPrefix": "nightly-", "state": "completed"}',
        "--select", '{"state": "completed", "olderThan": "P7D"}', "--limit", "50", "--dry-run", "--command-id", "sel-1",
    )  # fmt: skip
    assert run.code == 0, run.err
    assert "selector commands are checked by the server" in run.err
    body = only_body(peer)
    assert body["select"] == {"state": "completed", "olderThan": "P7D"}
    assert body["jobSelect"] == {"idPrefix": "nightly-", "state": "completed"}
    assert (body["limit"], body["dryRun"], body["commandId"]) == (50, True, "sel-1")
    assert "jobId" not in body and "taskId" not in body


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--select", "{not json"], "--select is not valid JSON"),
        (["--select", "[1, 2]"], "--select must be a JSON object"),
        (["--job-select", '"x"'], "--job-select must be a JSON object"),
        (["--limit", "many"], "invalid int value"),
    ],
)
def test_selector_flags_must_be_json_objects(tool: Tool, peer: ServiceBusPeer, flags: list[str], message: str) -> None:
    run = tool("send", "terminateTask", "--job", "j", *flags)
    assert run.code == 64
    assert message in run.err
    assert queued(peer) == []


def test_an_action_is_required_unless_raw(tool: Tool, peer: ServiceBusPeer) -> None:
    run = tool("send", "--job", "j")
    assert run.code == 64
    assert "send needs an action" in run.err
    assert queued(peer) == []


def test_raw_sends_the_file_bytes_as_given(tool: Tool, peer: ServiceBusPeer, tmp_path: Path) -> None:
    raw = b'{ "action": "terminateTask",\n  "jobId": "j", "taskId": "t", "commandId": "raw-1", "extra": 1 }\n'
    body_file = tmp_path / "body.json"
    body_file.write_bytes(raw)
    run = tool("send", "--raw", str(body_file))
    assert run.code == 0, run.err
    [message] = queued(peer)
    assert message["body"] == raw
    assert message["message_id"] == "raw-1"  # the body's commandId
    assert properties_of(message) == {}


def test_raw_from_stdin_with_a_chosen_message_id(
    tool: Tool, peer: ServiceBusPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"\xff not json at all")))
    run = tool("send", "--raw", "-", "--message-id", "producer-42")
    assert run.code == 0, run.err
    [message] = queued(peer)
    assert (message["body"], message["message_id"]) == (b"\xff not json at all", "producer-42")


def test_raw_without_any_id_gets_a_new_message_id(tool: Tool, peer: ServiceBusPeer, tmp_path: Path) -> None:
    body_file = tmp_path / "body.bin"
    body_file.write_bytes(b"[]")
    assert tool("send", "--raw", str(body_file)).code == 0
    [message] = queued(peer)
    assert re.fullmatch(r"[0-9a-f-]{36}", message["message_id"])


def test_raw_refuses_command_flags_and_unreadable_files(tool: Tool, peer: ServiceBusPeer, tmp_path: Path) -> None:
    mixed = tool("send", "terminateTask", "--raw", "-", "--job", "j")
    assert mixed.code == 64
    assert "leave out an action, --job" in mixed.err
    missing = tool("send", "--raw", str(tmp_path / "absent.json"))
    assert missing.code == 64
    assert "cannot read --raw" in missing.err
    assert queued(peer) == []


def test_message_id_is_only_for_raw(tool: Tool) -> None:
    run = tool("send", "terminateJob", "--job", "j", "--message-id", "m")
    assert run.code == 64
    assert "--message-id is for --raw" in run.err


def test_a_repeated_command_id_is_dropped_by_the_queue(tool: Tool, peer: ServiceBusPeer) -> None:
    for _ in range(2):
        assert tool("send", "terminateJob", "--job", "j", "--command-id", "same").code == 0
    assert [m["message_id"] for m in queued(peer)] == ["same"]
