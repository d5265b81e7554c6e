"""The peer carries a burst of the benchmark's size intact, and its command line works.

How fast it does so is measured by `make bench` (bench/end_to_end.py), never asserted here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulators.servicebus import ServiceBusPeer

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
MESSAGES = 600


def test_a_burst_of_batches_is_received_and_completed_exactly_once(
    client: ServiceBusClient, peer: ServiceBusPeer
) -> None:
    with (
        client.get_queue_sender("throughput") as sender,
        client.get_queue_receiver("throughput", max_wait_time=5, prefetch_count=100) as receiver,
    ):
        for first in range(0, MESSAGES, 100):
            sender.send_messages([ServiceBusMessage(f"m{n}", message_id=f"t{n}") for n in range(first, first + 100)])
        received: list[str] = []
        while len(received) < MESSAGES:
            batch = receiver.receive_messages(max_message_count=100, max_wait_time=5)
            assert batch, "receive timed out"
            for message in batch:
                receiver.complete_message(message)
            received += [str(message.message_id) for message in batch]
    assert sorted(received) == sorted(f"t{n}" for n in range(MESSAGES))
    assert peer.messages("throughput") == []


def _start_cli(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-m", "emulators.servicebus", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def test_cli_serves_until_terminated(tmp_path: Path) -> None:
    process = _start_cli("--port", "0", "--db", str(tmp_path / "cli.db"))
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(2)]
        connection_string = lines[1].removeprefix("connection string: ").strip()
        assert connection_string.endswith("SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true")
        with (
            ServiceBusClient.from_connection_string(connection_string) as client,
            client.get_queue_sender("batch-commands") as sender,
        ):
            sender.send_messages(ServiceBusMessage("{}", message_id="cli-1"))
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
    with ServiceBusPeer(db_path=str(tmp_path / "cli.db")) as reopened:
        assert [m["message_id"] for m in reopened.messages("batch-commands")] == ["cli-1"]


def test_cli_makes_a_certificate(tmp_path: Path) -> None:
    process = _start_cli("--make-cert", str(tmp_path))
    assert process.wait(timeout=30) == 0
    assert (tmp_path / "cert.pem").read_text().startswith("-----BEGIN CERTIFICATE-----")
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0
