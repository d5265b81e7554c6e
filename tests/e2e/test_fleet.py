"""Fleet operations seen from outside the running system: real azure-servicebus SDK, the Service Bus peer, the
local host driving function_app, the Batch emulator over HTTP (README, "Fleet operations").

A selector over 10 000 tasks, a peer restart and a killed host (SIGKILL of a host process) in the middle of an
expansion, a dry run, two timer runs of one slot, and an alert that names a policy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, Final

import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from emulators.batch import BatchEmulator
from emulators.identity import IdentityEndpoint
from emulators.servicebus import ServiceBusPeer
from emulators.servicebus.config import DEFAULT_CONFIG_PATH
from local.host import LocalHost, Ports
from local.outcomes import ALL_OUTCOMES, OutcomeListener
from shared.config import SETTINGS as PRODUCT_SETTINGS
from tests.e2e.conftest import Outcomes, dead_letters, send

pytestmark = pytest.mark.slow

ROOT: Final = Path(__file__).resolve().parents[2]
OLD: Final = datetime.now(UTC) - timedelta(days=30)
TERMINAL: Final = ("succeeded", "alreadyDone", "deadLetter")
POLICIES: Final = [
    {"name": "orphans", "action": "terminateJob", "select": {"state": "active", "noTasks": True}, "dryRun": False},
]
SETTINGS: Final = {
    "RETRY_BASE_DELAY_SECONDS": "0.5",
    "RETRY_MAX_DELAY_SECONDS": "1.5",
    "BATCH_READ_TIMEOUT_SECONDS": "2",
    "FLEET_SCOPE_PREFIXES": "e2e-,kill-",
    "FLEET_DEFAULT_LIMIT": "1000",
    "FLEET_MAX_LIMIT": "100000",
    "POLICIES": json.dumps(POLICIES),
    # Once a year, so the host's own timers never fire during a run: a scheduled run in the same slot as a
    # test's manual one would take its ids first (the behaviour under test), and make the test flaky.
    "POLICY_SCHEDULE": "0 0 0 1 1 *",
    "RETENTION_SCHEDULE": "0 0 0 1 1 *",
}


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalHost]:
    db = tmp_path_factory.mktemp("servicebus") / "peer.db"
    with LocalHost(ports=Ports(0, 0, 0, 0), db_path=str(db), seed=False, print_outcomes=False, overrides=SETTINGS) as h:
        original = h.peer
        yield h
        if h.peer is not None and h.peer is not original:  # a test restarted the peer: stop its replacement too
            h.peer.stop()


# ``outcomes`` and ``sb_client`` are tests/e2e/conftest.py's, built on this module's ``host``.


def emulator(host: LocalHost) -> BatchEmulator:
    assert host.batch is not None
    return host.batch


def seed_completed(batch: BatchEmulator, job_id: str, count: int) -> list[str]:
    ids = [f"t{n:05d}" for n in range(count)]
    batch.seed_job(job_id)
    batch.seed_tasks(job_id, ({"id": t, "state": "completed", "state_transition_time": OLD} for t in ids))
    return ids


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def terminal_ids(outcomes: Outcomes, prefix: str) -> set[str]:
    with outcomes._lock:
        events = list(outcomes.events.values())
    return {e["commandId"] for e in events if e["commandId"].startswith(prefix) and e["decision"] in TERMINAL}


def pages_seen(outcomes: Outcomes, command_id: str) -> int:
    return max((e["fanOut"]["page"] for e in outcomes.of(command_id) if e.get("fanOut")), default=0)


def assert_every_target_once(outcomes: Outcomes, selector_id: str, job_id: str, tasks: list[str]) -> None:
    """One terminal outcome per target, under the one id the target can have, and one for the selector."""
    assert terminal_ids(outcomes, f"{selector_id}/") == {f"{selector_id}/{job_id}/{task}" for task in tasks}
    assert [e["decision"] for e in outcomes.of(selector_id) if e["decision"] in TERMINAL] == ["succeeded"]


def test_a_selector_over_ten_thousand_tasks_acts_on_every_one_once(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    batch = emulator(host)
    tasks = seed_completed(batch, "e2e-big", 10_000)
    before = batch.request_count
    send(sb_client, {"action": "deleteTask", "jobId": "e2e-big", "select": {"state": "completed"},
                     "limit": 100_000, "commandId": "big"})  # fmt: skip

    final = outcomes.wait("big", "succeeded", timeout=600)
    assert (final["fanOut"]["totalSelected"], final["fanOut"]["totalEnqueued"]) == (10_000, 10_000)
    wait_until(lambda: len(terminal_ids(outcomes, "big/")) == 10_000, 300, "every target's outcome")
    assert_every_target_once(outcomes, "big", "e2e-big", tasks)
    assert all(batch.get_task("e2e-big", t) is None for t in tasks)
    assert [e["decision"] for e in outcomes.of("big")] == ["expanding"] * 20 + ["succeeded"]
    assert batch.request_count - before == 20 + 10_000  # one listing page per invocation, one call per target


def test_a_dry_run_walks_the_pages_and_changes_nothing(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    batch = emulator(host)
    tasks = seed_completed(batch, "e2e-dry", 1200)
    send(sb_client, {"action": "deleteTask", "jobId": "e2e-dry", "select": {"idPrefix": "t00"}, "dryRun": True,
                     "limit": 5000, "commandId": "dry"})  # fmt: skip
    final = outcomes.wait("dry", "succeeded", timeout=60)
    assert (final["dryRun"], final["fanOut"]["totalSelected"], final["fanOut"]["page"]) == (True, 1000, 3)
    assert final["fanOut"]["firstTargets"][0] == "e2e-dry/t00000"
    assert outcomes.properties["dry#dryRun"]["application_properties"]["dryRun"] is True
    time.sleep(1)
    assert terminal_ids(outcomes, "dry/") == set()
    assert all(batch.get_task("e2e-dry", t) is not None for t in tasks)


def test_restarting_the_peer_mid_expansion_neither_doubles_nor_misses_a_target(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    batch = emulator(host)
    tasks = seed_completed(batch, "e2e-restart", 3000)
    batch.inject_fault(operation="deleteTask", latency=0.02, count=3000)  # keep the expansion going for a while
    send(sb_client, {"action": "deleteTask", "jobId": "e2e-restart", "select": {"state": "completed"},
                     "limit": 100_000, "commandId": "restart"})  # fmt: skip
    wait_until(lambda: pages_seen(outcomes, "restart") >= 2, 60, "page 2 of the selector")

    assert host.peer is not None
    port, db_path = host.peer.port, host.db_path
    host.peer.stop()
    time.sleep(0.5)
    replacement = ServiceBusPeer(port=port, db_path=db_path)
    replacement.start()
    host.peer = replacement

    outcomes.wait("restart", "succeeded", timeout=300)
    wait_until(lambda: len(terminal_ids(outcomes, "restart/")) == 3000, 300, "every target's outcome")
    assert_every_target_once(outcomes, "restart", "e2e-restart", tasks)
    assert all(batch.get_task("e2e-restart", t) is None for t in tasks)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"select": {"state": "completed", "colour": "red"}}, "select has unknown fields ['colour']"),
        ({"select": {}}, "select is empty; a selector must say what it selects"),
        ({"select": {"state": "completed"}, "taskId": "t1"}, "taskId cannot be combined with select or jobSelect"),
        ({"select": {"state": "completed"}, "limit": 100_001}, "limit must be a whole number from 1 to 100000"),
        ({"select": {"state": "completed"}, "jobId": "prod-1"}, "jobId 'prod-1' is outside FLEET_SCOPE_PREFIXES"),
    ],
    ids=["unknown-field", "empty", "with-task-id", "limit", "out-of-scope"],
)
def test_a_malformed_selector_is_dead_lettered_with_its_reason_and_no_batch_call(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes, body: dict[str, Any], reason: str
) -> None:
    batch = emulator(host)
    before = batch.request_count
    command_id = "bad-" + hashlib.sha256(reason.encode()).hexdigest()[:12]
    send(sb_client, {"action": "deleteTask", "jobId": "e2e-bad", **body, "commandId": command_id})
    (found,) = dead_letters(sb_client, {command_id}).values()
    assert found.dead_letter_reason == "InvalidCommand"
    assert reason in str(found.dead_letter_error_description)
    assert reason in outcomes.wait(command_id, "deadLetter")["detail"]
    assert batch.request_count == before


def post_alert(host: LocalHost, alert_id: str, **properties: str) -> tuple[int, dict[str, Any]]:
    assert host.http is not None
    payload = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {"alertId": alert_id, "alertRule": "orphans", "monitorCondition": "Fired"},
            "alertContext": {},
            "customProperties": properties,
        },
    }
    request = urllib.request.Request(
        f"{host.http.url}/api/alerts", data=json.dumps(payload).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # a loopback test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_an_alert_naming_a_policy_runs_it_and_an_unknown_policy_gets_a_clear_400(
    host: LocalHost, outcomes: Outcomes
) -> None:
    batch = emulator(host)
    batch.seed_job("e2e-orphan-1")
    batch.seed_job("e2e-orphan-2")
    seed_completed(batch, "e2e-parent", 2)
    status, answer = post_alert(host, "/alerts/e2e-policy-1", batchPolicy="orphans")
    assert status == 202, answer
    (command,) = answer["commands"]
    final = outcomes.wait(command["commandId"], "succeeded", timeout=60)
    assert final["fanOut"]["kind"] == "jobs"
    for job in ("e2e-orphan-1", "e2e-orphan-2"):
        outcomes.wait(f"{command['commandId']}/{job}", "succeeded", timeout=30)
        assert (batch.get_job(job) or {}).get("state") in ("terminating", "completed")
    assert (batch.get_job("e2e-parent") or {}).get("state") == "active"

    status, answer = post_alert(host, "/alerts/e2e-policy-2", batchPolicy="no-such-policy")
    assert status == 400
    assert answer["reason"].startswith("batchPolicy 'no-such-policy' is not a configured policy")
    assert "'orphans'" in answer["reason"]


def test_two_runs_of_the_policy_timer_in_one_slot_act_once(host: LocalHost, outcomes: Outcomes) -> None:
    batch = emulator(host)
    batch.seed_job("e2e-orphan-timer")
    assert host.http is not None
    for _ in range(2):
        request = urllib.request.Request(f"{host.http.url}/admin/functions/run_policies", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:  # a loopback test URL
            assert response.status == 202
        time.sleep(0.3)

    def acted() -> list[str]:
        return sorted(e["commandId"] for e in outcomes.decided("e2e-orphan-timer", "succeeded"))

    wait_until(lambda: bool(acted()), 60, "the policy's command for the new orphan job")
    time.sleep(2)
    (one,) = acted()
    assert one.startswith("policy:orphans:") and one.endswith("/e2e-orphan-timer")
    runs = {e["commandId"] for e in outcomes.events.values() if e["commandId"].startswith("policy:orphans:2")}
    assert len({command_id.split("/")[0] for command_id in runs}) == 1  # one selector for the slot


# ---------------------------------------------------------------- a host process killed mid-expansion


TEST_SUBSCRIPTION: Final = "fleet-test"


def _peer_config(lock_seconds: int) -> dict[str, Any]:
    """The shipped peer config with short queue locks, plus a subscription of this test's own (the host process
    prints the outcomes it receives from ``all-outcomes``, and two receivers would share its messages)."""
    config: dict[str, Any] = json.loads(Path(DEFAULT_CONFIG_PATH).read_text(encoding="utf-8"))
    namespace = config["UserConfig"]["Namespaces"][0]
    namespace["Queues"][0]["Properties"]["LockDuration"] = f"PT{lock_seconds}S"
    subscriptions = namespace["Topics"][0]["Subscriptions"]
    own = copy.deepcopy(next(s for s in subscriptions if s["Name"] == ALL_OUTCOMES))
    own["Name"] = TEST_SUBSCRIPTION
    subscriptions.append(own)
    return config


class OwnOutcomes(Outcomes):
    """The e2e outcome collector on this test's own subscription."""

    def start(self) -> OwnOutcomes:
        self._listener = OutcomeListener(self.connection_string, self.topic, self._keep, TEST_SUBSCRIPTION).start()
        return self


class HostProcess:
    """``python -m local run`` in a process of its own, using the stand-ins this test started."""

    def __init__(self, batch: BatchEmulator, identity: IdentityEndpoint, peer: ServiceBusPeer) -> None:
        # Not this process's settings (a LocalHost running here exports its own): the stand-ins below only.
        inherited = {k: v for k, v in os.environ.items() if k not in PRODUCT_SETTINGS and not k.startswith("IDENTITY_")}
        env = {**inherited, **SETTINGS, "PYTHONPATH": str(ROOT)}
        ports = {
            "--batch-port": batch.url.rsplit(":", 1)[1],
            "--identity-port": identity.url.rsplit(":", 1)[1],
            "--servicebus-port": str(peer.port),
            "--http-port": "0",
        }
        arguments = [sys.executable, "-m", "local", "run", "--no-demo"]
        for name, value in ports.items():
            arguments += [name, value]
        self.process = subprocess.Popen(
            arguments, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(self.process.stdout,), daemon=True)
        self._reader.start()
        wait_until(lambda: any("functions are running" in line for line in self.lines), 60, "the host to start")

    def _read(self, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            self.lines.append(line)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def test_killing_the_host_mid_expansion_and_starting_another_neither_doubles_nor_misses_a_target(
    tmp_path: Path,
) -> None:
    with (
        IdentityEndpoint(port=0, header_secret="local-identity-secret") as identity,
        BatchEmulator(port=0, jwks_url=identity.jwks_url) as batch,
    ):
        peer = ServiceBusPeer(_peer_config(lock_seconds=5), port=0, db_path=str(tmp_path / "sb.db"))
        peer.start()
        collector = OwnOutcomes(peer.connection_string).start()
        first: HostProcess | None = None
        second: HostProcess | None = None
        try:
            tasks = seed_completed(batch, "kill-job", 3000)
            batch.inject_fault(operation="deleteTask", latency=0.02, count=3000)
            first = HostProcess(batch, identity, peer)
            with ServiceBusClient.from_connection_string(peer.connection_string) as client:
                send(client, {"action": "deleteTask", "jobId": "kill-job", "select": {"state": "completed"},
                              "limit": 100_000, "commandId": "kill"})  # fmt: skip
            wait_until(lambda: pages_seen(collector, "kill") >= 3, 120, "page 3 of the selector")
            first.kill()  # no settlement, no drain: in-flight messages come back when their locks expire
            left_at_kill = sum(1 for t in tasks if batch.get_task("kill-job", t) is not None)
            assert 0 < left_at_kill < 3000

            second = HostProcess(batch, identity, peer)
            collector.wait("kill", "succeeded", timeout=300)
            wait_until(lambda: len(terminal_ids(collector, "kill/")) == 3000, 300, "every target's outcome")
            assert_every_target_once(collector, "kill", "kill-job", tasks)
            assert all(batch.get_task("kill-job", t) is None for t in tasks)
            # Six listing pages, one delete per task, and repeats only of what was in flight at the kill
            # (at most 16 invocations at once, plus a page that is listed again): no target twice by design.
            assert batch.request_count <= 6 + 3000 + 16 + 2
        finally:
            for process in (first, second):
                if process is not None:
                    process.stop()
            collector.stop()
            peer.stop()


TRACE_ID: Final = "4bf92f3577b34da6a3ce929d0e0e4736"


def trace_of(outcomes: Outcomes, message_id: str) -> str:
    properties = outcomes.properties[message_id]["application_properties"]
    return str(properties["traceparent"]).split("-")[1]


def test_the_senders_trace_id_reaches_the_outcome_the_retry_copy_and_the_fan_out_commands(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    """docs/observability.md: the command's traceparent is carried onto everything sent on its behalf."""
    batch = emulator(host)
    batch.seed_job("e2e-trace")
    batch.seed_task("e2e-trace", "running-1", state="running")
    tasks = seed_completed(batch, "e2e-trace-fan", 3)
    batch.inject_fault(operation="terminateTask", status=503, code="ServerBusy", count=1)
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    commands: list[dict[str, Any]] = [
        {"action": "terminateTask", "jobId": "e2e-trace", "taskId": "running-1", "commandId": "trace-1"},
        {"action": "deleteTask", "jobId": "e2e-trace-fan", "select": {"state": "completed"}, "commandId": "trace-fan"},
    ]
    with sb_client.get_queue_sender("batch-commands") as sender:
        sender.send_messages(
            [
                ServiceBusMessage(
                    json.dumps(body), message_id=body["commandId"], application_properties={"traceparent": traceparent}
                )
                for body in commands
            ]
        )
    outcomes.wait("trace-1", "retry")
    outcomes.wait("trace-1", "succeeded")  # decided on the retry copy
    assert trace_of(outcomes, "trace-1#1") == TRACE_ID  # the retry event
    assert trace_of(outcomes, "trace-1") == TRACE_ID  # the copy's outcome: the copy carried the trace
    outcomes.wait("trace-fan", "succeeded")
    wait_until(lambda: len(terminal_ids(outcomes, "trace-fan/")) == 3, 60, "the fan-out commands' outcomes")
    assert trace_of(outcomes, "trace-fan") == TRACE_ID
    for task in tasks:  # each fan-out command carried the trace to its own outcome
        assert trace_of(outcomes, f"trace-fan/e2e-trace-fan/{task}") == TRACE_ID
