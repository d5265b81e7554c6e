"""``watch``: outcome events as they arrive, filtered, as lines or JSON, without taking any from the subscription."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from cli.__main__ import main
from cli.outcomes import OutcomeBrowser
from emulators.servicebus import ServiceBusPeer
from tests.cli.conftest import TOPIC, Tool

ALL_OUTCOMES = f"{TOPIC}/Subscriptions/all-outcomes"


def event(
    command_id: str, decision: str, action: str = "terminateTask", job: str = "job-1", **extra: Any
) -> dict[str, Any]:
    """An outcome event as the processor publishes it (README, "Outcome event")."""
    body: dict[str, Any] = {
        "commandId": command_id,
        "action": action,
        "account": "local",
        "jobId": job,
        "taskId": "t1" if action.endswith("Task") else None,
        "decision": decision,
        "attempt": 1,
        "httpStatus": 204 if decision == "succeeded" else 409,
        "batchError": None if decision == "succeeded" else {"code": "TaskCompleted", "message": "done", "values": []},
        "dryRun": False,
        "occurredAt": "2026-12-01T10:00:00.000000+00:00",
        "requestedBy": "test",
    }
    body.update(extra)
    return body


def publish(client: ServiceBusClient, *events: dict[str, Any]) -> None:
    with client.get_topic_sender(TOPIC) as sender:
        sender.send_messages(
            [
                ServiceBusMessage(
                    json.dumps(e),
                    message_id=e["commandId"] if e["decision"] != "retry" else f"{e['commandId']}#{e['attempt']}",
                    correlation_id=e["commandId"],
                    subject=e["action"],
                    content_type="application/json",
                    application_properties={
                        "decision": e["decision"],
                        "action": e["action"],
                        "jobId": e["jobId"],
                        "taskId": e["taskId"] or "",
                        "dryRun": False,
                    },
                )
                for e in events
            ]
        )


def test_history_prints_one_line_per_event(tool: Tool, client: ServiceBusClient) -> None:
    publish(
        client,
        event("w-1", "succeeded"),
        event("w-2", "deadLetter", deadLetterReason="TaskNotFound"),
        event("w-3", "retry", httpStatus=503, batchError={"code": "ServerBusy"}, retryAt="2026-12-01T10:00:05Z"),
    )
    run = tool("watch", "--history", "--count", "3", "--timeout", "20")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert len(lines) == 3
    assert lines[0].split()[:4] == ["2026-12-01T10:00:00Z", "succeeded", "terminateTask", "job-1/t1"]
    assert "attempt=1 http=204" in lines[0] and lines[0].endswith("commandId=w-1")
    assert "deadLetter" in lines[1] and "http=409 TaskCompleted" in lines[1]
    assert "retry" in lines[2] and "ServerBusy" in lines[2] and "retryAt=2026-12-01T10:00:05Z" in lines[2]
    assert "watching batch-outcomes/all-outcomes" in run.err


def test_filters_and_json(tool: Tool, client: ServiceBusClient) -> None:
    publish(
        client,
        event("f-1", "succeeded", job="job-a"),
        event("f-2", "deadLetter", job="job-a"),
        event("f-3", "deadLetter", job="job-b"),
        event("f-4", "deadLetter", action="terminateJob", job="job-a"),
        event("f-5", "alreadyDone", job="job-a"),
    )
    run = tool(
        "watch", "--history", "--decision", "deadLetter,alreadyDone", "--job", "job-a", "--action", "terminateTask",
        "--json", "--timeout", "3",
    )  # fmt: skip
    assert run.code == 0, run.err
    events = [json.loads(line) for line in run.out.splitlines()]
    assert [e["commandId"] for e in events] == ["f-2", "f-5"]
    assert events[0] == event("f-2", "deadLetter", job="job-a")


def test_watch_shows_only_new_events_and_takes_nothing(
    peer: ServiceBusPeer, client: ServiceBusClient, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(client, event("old-1", "deadLetter"))
    argv = ["watch", "--decision", "deadLetter", "--count", "2", "--timeout", "30"]
    result: dict[str, int] = {}
    watcher = threading.Thread(
        target=lambda: result.setdefault("code", main([*argv, "--connection-string", peer.connection_string]))
    )
    watcher.start()
    out, err = "", ""
    deadline = time.monotonic() + 20
    while "watching" not in err and time.monotonic() < deadline:  # the tail is found: publish now
        time.sleep(0.05)
        captured = capsys.readouterr()
        out, err = out + captured.out, err + captured.err
    publish(client, event("new-1", "succeeded"), event("new-2", "deadLetter"), event("new-3", "deadLetter"))
    watcher.join(timeout=30)
    captured = capsys.readouterr()
    out += captured.out
    assert result["code"] == 0
    assert [line.split()[-1] for line in out.splitlines()] == ["commandId=new-2", "commandId=new-3"]
    stored = peer.messages(ALL_OUTCOMES)
    assert len(stored) == 4  # browsing takes nothing from the subscription ...
    assert all(m["state"] == "active" and m["delivery_count"] == 0 for m in stored)  # ... and locks nothing


def test_watch_ends_at_its_timeout(tool: Tool) -> None:
    started = time.monotonic()
    run = tool("watch", "--timeout", "1")
    assert (run.code, run.out) == (0, "")
    assert time.monotonic() - started < 10


def test_odd_events_still_get_a_line(tool: Tool, client: ServiceBusClient) -> None:
    with client.get_topic_sender(TOPIC) as sender:
        sender.send_messages(
            [
                ServiceBusMessage(b"not json", message_id="odd-1"),
                ServiceBusMessage(
                    json.dumps({"event": "someSummary", "jobsScanned": 2, "tasksSeen": 7, "commandsEnqueued": 7}),
                    message_id="summary-1",
                    application_properties={"decision": "summary"},
                ),
            ]
        )
    run = tool("watch", "--history", "--count", "2", "--timeout", "10")
    assert run.code == 0, run.err
    first, second = run.out.splitlines()
    assert "message odd-1: the body is not a JSON object" in first
    assert "someSummary jobsScanned=2 tasksSeen=7 commandsEnqueued=7" in second


def test_a_browsing_printer_and_the_tool_both_see_every_event(tmp_path: Path) -> None:
    """OutcomeBrowser (for the local host's printer) takes nothing, across a peer restart."""
    seen: list[str] = []
    with ServiceBusPeer(port=0, db_path=str(tmp_path / "peer.db")) as peer:
        with ServiceBusClient.from_connection_string(peer.connection_string) as client:
            publish(client, event("before-1", "succeeded"))
        printer = OutcomeBrowser(peer.connection_string, TOPIC, lambda m: seen.append(str(m.message_id)), poll=0.05)
        printer.start()
        try:
            with ServiceBusClient.from_connection_string(peer.connection_string) as client:
                publish(client, event("b-1", "succeeded"), event("b-2", "deadLetter"))
            wait_until(lambda: len(seen) >= 2)
            peer.restart()
            with ServiceBusClient.from_connection_string(peer.connection_string) as client:
                publish(client, event("b-3", "alreadyDone"))
            wait_until(lambda: len(seen) >= 3)
        finally:
            printer.stop()
        assert seen == ["b-1", "b-2", "b-3"]  # new events only, each once
        stored = peer.messages(ALL_OUTCOMES)
        assert len(stored) == 4 and all(m["state"] == "active" for m in stored)


def wait_until(condition: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert condition()


def test_wait_reports_progress_and_exits_with_the_terminal_decision(
    peer: ServiceBusPeer, client: ServiceBusClient, capsys: pytest.CaptureFixture[str]
) -> None:
    """`send --wait` with the processor played by the test: a retry event, then a dead-letter."""
    argv = ["send", "terminateJob", "--job", "job-9", "--command-id", "prog-1", "--wait", "--timeout", "30"]
    result: dict[str, int] = {}
    sender = threading.Thread(
        target=lambda: result.setdefault("code", main([*argv, "--connection-string", peer.connection_string]))
    )
    sender.start()
    wait_until(lambda: len(peer.messages("batch-commands")) == 1)
    publish(
        client,
        event("other-1", "deadLetter", action="terminateJob", job="job-9"),
        event("prog-1", "retry", action="terminateJob", job="job-9", httpStatus=503, batchError={"code": "ServerBusy"}),
        event("prog-1", "deadLetter", action="terminateJob", job="job-9", attempt=2, deadLetterReason="JobNotFound"),
    )
    sender.join(timeout=30)
    captured = capsys.readouterr()
    assert result["code"] == 2
    assert "retry" in captured.err and "ServerBusy" in captured.err and "commandId=prog-1" in captured.err
    sent, outcome = captured.out.splitlines()
    assert sent.startswith('sent {"action":"terminateJob"')
    assert " deadLetter " in outcome and "attempt=2" in outcome and outcome.endswith("commandId=prog-1")
