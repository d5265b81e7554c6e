"""The batch-lifecycle tool against a real local Service Bus peer, through the real SDK.

Each test gets its own peer on a free port, with the product's entities (the shipped
``emulators/servicebus/default_config.json``, as the local host starts it), so queue, dead-letter queue
and duplicate-detection history start empty. The tool runs in-process through ``cli.__main__.main``.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

from cli.__main__ import main
from emulators.servicebus import ServiceBusPeer

QUEUE = "batch-commands"
DLQ = f"{QUEUE}/$DeadLetterQueue"
TOPIC = "batch-outcomes"


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Tool = Callable[..., Run]


@pytest.fixture(autouse=True)
def _no_tool_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own BATCH_LIFECYCLE_* settings must not point the tests elsewhere."""
    monkeypatch.delenv("BATCH_LIFECYCLE_CONNECTION", raising=False)
    monkeypatch.delenv("BATCH_LIFECYCLE_NAMESPACE", raising=False)


@pytest.fixture
def peer() -> Iterator[ServiceBusPeer]:
    with ServiceBusPeer(port=0) as running:  # config None: the product's entities
        yield running
    assert running.errors == []


@pytest.fixture
def client(peer: ServiceBusPeer) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(peer.connection_string) as sb:
        yield sb


@pytest.fixture
def tool(peer: ServiceBusPeer, capsys: pytest.CaptureFixture[str]) -> Tool:
    """Run the tool against the test's peer; returns the exit code and what it printed."""

    def run(*argv: str) -> Run:
        code = main([*argv, "--connection-string", peer.connection_string])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def free_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def local_connection(port: int) -> str:
    return (
        f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=RootManageSharedAccessKey;"
        "SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true"
    )


def text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def properties_of(stored: dict[str, Any]) -> dict[str, Any]:
    return {text(key): text(value) for key, value in (stored.get("application_properties") or {}).items()}


def peek_queue(client: ServiceBusClient, count: int = 100) -> list[ServiceBusReceivedMessage]:
    with client.get_queue_receiver(QUEUE) as receiver:
        return list(receiver.peek_messages(count, sequence_number=1))


def dead_letter(
    client: ServiceBusClient,
    messages: Sequence[tuple[str, str, str | None]],
    *,
    body_command_id: bool = True,
    **properties: Any,
) -> None:
    """Put commands in the dead-letter queue as the processor would: (message_id, reason, description).

    The body is a valid command; its commandId is the message_id, in the body too unless
    ``body_command_id`` is false. ``properties`` are set on each message.
    """
    wanted = {command_id: (reason, description) for command_id, reason, description in messages}
    with client.get_queue_sender(QUEUE) as sender:
        sender.send_messages(
            [
                ServiceBusMessage(
                    json.dumps(command_body(command_id if body_command_id else None)),
                    message_id=command_id,
                    subject="terminateTask",
                    correlation_id=command_id,
                    content_type="application/json",
                    application_properties=application_properties(command_id, properties),
                )
                for command_id, _, _ in messages
            ]
        )
    done: set[str] = set()
    with client.get_queue_receiver(QUEUE) as receiver:
        while done != set(wanted):
            for message in receiver.receive_messages(max_message_count=50, max_wait_time=2):
                reason, description = wanted[str(message.message_id)]
                receiver.dead_letter_message(message, reason=reason, error_description=description)
                done.add(str(message.message_id))


def application_properties(command_id: str, extra: dict[str, Any]) -> dict[str | bytes, Any] | None:
    if not extra:
        return None
    found: dict[str | bytes, Any] = {"commandId": command_id}
    for name, value in extra.items():
        found[name] = value
    return found


def command_body(command_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {"action": "terminateTask", "jobId": "job-1", "taskId": "t1"}
    if command_id is not None:
        body["commandId"] = command_id
    return body
