"""The whole system through the local host: real SDK, real peer, Batch emulator, function_app."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage, ServiceBusSubQueue

from local.host import LocalHost, Ports
from local.outcomes import OutcomeListener, event_of

E2E_SETTINGS = {
    # Once a year: the host's own timers must not fire in a run and take the ids of a test's manual run.
    "POLICY_SCHEDULE": "0 0 0 1 1 *",
    "RETENTION_SCHEDULE": "0 0 0 1 1 *",
    "RETRY_BASE_DELAY_SECONDS": "0.5",
    "RETRY_MAX_DELAY_SECONDS": "1.5",
    "BATCH_READ_TIMEOUT_SECONDS": "1",
    "FLEET_SCOPE_PREFIXES": "e2e-",  # the retention policy, like every selector, acts only on jobs in scope
}


@dataclass
class Outcomes:
    """Collects every outcome event from the topic subscription ``all`` (deduplicated by message id)."""

    connection_string: str
    topic: str = "batch-outcomes"
    events: dict[str, dict[str, Any]] = field(default_factory=dict)
    properties: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Outcomes:
        self._listener = OutcomeListener(self.connection_string, self.topic, self._keep).start()
        return self

    def stop(self) -> None:
        self._listener.stop()

    def _keep(self, message: ServiceBusReceivedMessage) -> None:
        with self._lock:
            self.deliveries += 1
            key = str(message.message_id)
            self.events[key] = event_of(message)
            self.properties[key] = {
                "message_id": message.message_id,
                "correlation_id": message.correlation_id,
                "subject": message.subject,
                "content_type": message.content_type,
                "application_properties": {
                    (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                    for k, v in (message.application_properties or {}).items()
                },
            }

    def of(self, command_id: str) -> list[dict[str, Any]]:
        with self._lock:
            found = [e for e in self.events.values() if e.get("commandId") == command_id]
        return sorted(found, key=lambda e: int(e["attempt"]))

    def decided(self, job_id: str, decision: str) -> list[dict[str, Any]]:
        """Every event about ``job_id`` with that decision, whatever its command."""
        with self._lock:
            return [e for e in self.events.values() if e.get("jobId") == job_id and e.get("decision") == decision]

    def wait(self, command_id: str, decision: str | Callable[[str], bool], timeout: float = 30) -> dict[str, Any]:
        """The first event of ``command_id`` whose decision matches."""
        matches = decision if callable(decision) else (lambda d: d == decision)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.of(command_id):
                if matches(event["decision"]):
                    return event
            time.sleep(0.05)
        raise AssertionError(f"no {decision} outcome for {command_id}; seen: {self.of(command_id)}")


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    db = tmp_path_factory.mktemp("servicebus") / "peer.db"
    with LocalHost(
        ports=Ports(0, 0, 0, 0), db_path=str(db), seed=False, print_outcomes=False, overrides=E2E_SETTINGS
    ) as running:
        yield running


@pytest.fixture(scope="module")
def outcomes(host: LocalHost) -> Iterator[Outcomes]:
    collector = Outcomes(host.env["ServiceBusConnection"]).start()
    yield collector
    collector.stop()


@pytest.fixture(scope="module")
def sb_client(host: LocalHost) -> Iterator[ServiceBusClient]:
    with ServiceBusClient.from_connection_string(host.env["ServiceBusConnection"]) as client:
        yield client


def send(client: ServiceBusClient, *bodies: dict[str, Any] | bytes, message_ids: list[str] | None = None) -> None:
    """Send commands in one batch; message_id defaults to the body's commandId, as producers should."""
    messages = []
    for index, body in enumerate(bodies):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        message_id = message_ids[index] if message_ids else (body["commandId"] if isinstance(body, dict) else None)
        messages.append(ServiceBusMessage(raw, message_id=message_id, content_type="application/json"))
    with client.get_queue_sender("batch-commands") as sender:
        sender.send_messages(messages)


def dead_letters(
    client: ServiceBusClient, wanted: set[str], timeout: float = 20
) -> dict[str, ServiceBusReceivedMessage]:
    """Receive (and complete) dead-lettered commands until every wanted message id is found."""
    found: dict[str, ServiceBusReceivedMessage] = {}
    deadline = time.monotonic() + timeout
    with client.get_queue_receiver("batch-commands", sub_queue=ServiceBusSubQueue.DEAD_LETTER) as receiver:
        while not wanted <= set(found) and time.monotonic() < deadline:
            for message in receiver.receive_messages(max_message_count=20, max_wait_time=0.5):
                found[str(message.message_id)] = message
                receiver.complete_message(message)
    missing = wanted - set(found)
    assert not missing, f"not dead-lettered: {missing}"
    return found
