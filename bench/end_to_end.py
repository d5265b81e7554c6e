"""Benchmark 3: commands per second from send to outcome through the whole local system.

The local host (``local.host.LocalHost``) runs the Batch emulator, the identity endpoint, the Service
Bus peer and function_app's queue trigger with 16 concurrent invocations, all in this process. One run
sends ``commands`` terminateTask commands (one SDK batch) and times until every outcome event has been
received from the topic subscription ``all``.

The raw capacity of the parts alone is measured the same way, in this process too:

* peer: 16 concurrent consumers, each with its own SDK client, share ``commands`` round trips: send one
  message, receive one (peek-lock), complete it. (Each receive asks for one message while one is
  queued: a receive that times out with credit left on its link makes this peer hand that link
  messages nobody takes, which then wait out the one-minute lock - see docs/benchmarks.md.)
* emulator: ``commands`` Terminate Task calls from 16 threads (bare ``requests`` sessions, cached token).

One command costs the peer two such round trips (the command on the queue, its outcome on the topic) and
the emulator one call, so the part whose capacity per command is lowest bounds the system. The three
measurements alternate within each run (the order rotates); the ratio is taken per run, then the median.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import requests
from azure.identity import ManagedIdentityCredential
from azure.servicebus import ServiceBusClient, ServiceBusMessage, ServiceBusReceivedMessage

from bench.client_cost import identity_environment_vars
from bench.report import put_median
from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from emulators.servicebus import ServiceBusPeer
from local.host import LocalHost, Ports
from local.outcomes import OutcomeListener, event_of
from shared.batch_client import BATCH_SCOPE

CONCURRENCY: Final = 16
QUEUE: Final = "batch-commands"
TOPIC: Final = "batch-outcomes"
API_VERSION: Final = "2025-06-01"
TIMEOUT: Final = 120.0


@dataclass
class _Collector:
    """Counts outcome events (deduplicated by message id) on the subscription ``all-outcomes``."""

    connection_string: str
    seen: set[str] = field(default_factory=set)
    decisions: dict[str, int] = field(default_factory=dict)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> _Collector:
        self._listener = OutcomeListener(self.connection_string, TOPIC, self._count, max_wait_time=0.2).start()
        return self

    def stop(self) -> None:
        self._listener.stop()

    def _count(self, message: ServiceBusReceivedMessage) -> None:
        decision = str(event_of(message).get("decision"))
        with self._changed:
            if str(message.message_id) not in self.seen:
                self.seen.add(str(message.message_id))
                self.decisions[decision] = self.decisions.get(decision, 0) + 1
            self._changed.notify_all()

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.seen) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self.seen)} of {count} outcomes after {timeout} s")
                self._changed.wait(left)


def _send(client: ServiceBusClient, bodies: list[dict[str, Any]]) -> None:
    messages = [
        ServiceBusMessage(json.dumps(body).encode(), message_id=body["commandId"], content_type="application/json")
        for body in bodies
    ]
    with client.get_queue_sender(QUEUE) as sender:
        for start in range(0, len(messages), 100):
            sender.send_messages(messages[start : start + 100])


def _system_run(host: LocalHost, client: ServiceBusClient, collector: _Collector, commands: int, run: int) -> float:
    assert host.batch is not None
    job = f"e2e-{run}-{uuid.uuid4().hex[:8]}"
    host.batch.seed_job(job)
    host.batch.seed_tasks(job, [{"id": f"t{i}", "state": "running"} for i in range(commands)])
    bodies = [
        {"action": "terminateTask", "jobId": job, "taskId": f"t{i}", "commandId": f"{job}-t{i}"}
        for i in range(commands)
    ]
    already = len(collector.seen)
    started = time.perf_counter()
    _send(client, bodies)
    collector.wait_for(already + commands)
    return commands / (time.perf_counter() - started)


def _round_trips(connection_string: str, count: int, start: threading.Barrier) -> tuple[int, float]:
    """One consumer: ``count`` times send one message, receive one, complete it (own client and links)."""
    with (
        ServiceBusClient.from_connection_string(connection_string) as client,
        client.get_queue_sender(QUEUE) as sender,
        client.get_queue_receiver(QUEUE, prefetch_count=0) as receiver,
    ):
        # Open the links (and the connection's CBS) before the clock starts.
        sender.send_messages(ServiceBusMessage(b"{}", message_id=f"warm-{uuid.uuid4().hex}"))
        for message in receiver.receive_messages(max_message_count=1, max_wait_time=5):
            receiver.complete_message(message)
        start.wait(timeout=60)
        started = time.perf_counter()
        completed = 0
        for _ in range(count):
            sender.send_messages(ServiceBusMessage(b"{}", message_id=f"cap-{uuid.uuid4().hex}"))
            # Each receive asks for one message while at least one is queued, so no credit is left on a link.
            for message in receiver.receive_messages(max_message_count=1, max_wait_time=5):
                receiver.complete_message(message)
                completed += 1
        return completed, time.perf_counter() - started


def _peer_run(connection_string: str, commands: int) -> float:
    """16 concurrent consumers share ``commands`` send -> receive -> complete round trips."""
    start = threading.Barrier(CONCURRENCY)
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        futures = [
            pool.submit(_round_trips, connection_string, max(1, commands // CONCURRENCY), start)
            for _ in range(CONCURRENCY)
        ]
        results = [future.result() for future in futures]
    return sum(done for done, _ in results) / max(elapsed for _, elapsed in results)


def _emulator_run(batch: BatchEmulator, token: str, commands: int, run: int) -> float:
    job = f"cap-{run}"
    batch.seed_job(job)
    batch.seed_tasks(job, [{"id": f"t{i}", "state": "running"} for i in range(commands)])
    local = threading.local()
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}

    def terminate(index: int) -> None:
        session: requests.Session | None = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
        url = f"{batch.url}/jobs/{job}/tasks/t{index}/terminate?api-version={API_VERSION}"
        response = session.post(url, headers=headers, timeout=30)
        if response.status_code != 204:
            raise RuntimeError(f"terminate: HTTP {response.status_code}")

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(terminate, range(commands)))
    return commands / (time.perf_counter() - started)


def run(commands: int = 400, runs: int = 3) -> dict[str, Any]:
    """Each run measures the system, the peer and the emulator one after another, in a rotating order."""
    with tempfile.TemporaryDirectory() as folder, contextlib.ExitStack() as stack:
        host = stack.enter_context(
            LocalHost(ports=Ports(0, 0, 0, 0), db_path=str(Path(folder) / "peer.db"), seed=False, print_outcomes=False)
        )
        collector = _Collector(host.env["ServiceBusConnection"]).start()
        stack.callback(collector.stop)
        client = stack.enter_context(ServiceBusClient.from_connection_string(host.env["ServiceBusConnection"]))
        peer = stack.enter_context(ServiceBusPeer(db_path=str(Path(folder) / "capacity.db")))
        identity = stack.enter_context(IdentityEndpoint(port=0))
        batch = stack.enter_context(BatchEmulator(port=0, jwks_url=identity.jwks_url))
        with identity_environment_vars(identity.token_url, identity.header_secret):
            token = ManagedIdentityCredential(client_id="bench-identity").get_token(BATCH_SCOPE).token
        # Warm: links, token, connections.
        _system_run(host, client, collector, CONCURRENCY, -1)
        _emulator_run(batch, token, CONCURRENCY, -1)
        measure: dict[str, Callable[[int], float]] = {
            "system": lambda number: _system_run(host, client, collector, commands, number),
            "peer": lambda number: _peer_run(peer.connection_string, commands),
            "emulator": lambda number: _emulator_run(batch, token, commands, number),
        }
        rates: dict[str, list[float]] = {name: [] for name in measure}
        names = list(measure)
        for number in range(runs):
            for name in names[number % 3 :] + names[: number % 3]:
                rates[name].append(measure[name](number))
        decisions = dict(collector.decisions)
    # Commands per second each part could carry alone: the peer handles two round trips per command.
    peer_per_command = statistics.median(rates["peer"]) / 2
    emulator_per_command = statistics.median(rates["emulator"])
    bound = "servicebus-peer" if peer_per_command < emulator_per_command else "batch-emulator"
    result: dict[str, Any] = {"commands_per_run": commands, "runs": runs, "concurrency": CONCURRENCY}
    put_median(result, "system_per_second", rates["system"])
    result["decisions"] = decisions
    put_median(result, "peer_round_trips_per_second", rates["peer"])
    put_median(result, "emulator_calls_per_second", rates["emulator"])
    result["peer_capacity_commands_per_second"] = peer_per_command
    result["bound_by"] = bound
    per_run_bounds = [min(p / 2, e) for p, e in zip(rates["peer"], rates["emulator"], strict=True)]
    put_median(result, "ratio_vs_bound", [s / b for s, b in zip(rates["system"], per_run_bounds, strict=True)])
    return result
