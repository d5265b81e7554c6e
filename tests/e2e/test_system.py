"""Every decision path (docs/design.md, "Decision policy" to "Outcome events"), seen from outside the running system."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.servicebus import ServiceBusClient

from emulators.batch import BatchEmulator
from emulators.servicebus import ServiceBusPeer
from local.host import LocalHost
from tests.e2e.conftest import Outcomes, dead_letters, send

pytestmark = pytest.mark.slow


def emulator(host: LocalHost) -> BatchEmulator:
    assert host.batch is not None
    return host.batch


def state(host: LocalHost, job: str, task: str) -> str | None:
    found = emulator(host).get_task(job, task)
    return None if found is None else str(found["state"])


def command(action: str, job: str, task: str | None, command_id: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": action, "jobId": job, "commandId": command_id, **extra}
    if task is not None:
        body["taskId"] = task
    return body


def test_command_changes_batch_and_publishes_its_outcome(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    emulator(host).seed_job("e2e-ok")
    emulator(host).seed_task("e2e-ok", "t1", state="running")
    send(sb_client, command("terminateTask", "e2e-ok", "t1", "ok-1", requestedBy="e2e"))
    event = outcomes.wait("ok-1", "succeeded")
    assert state(host, "e2e-ok", "t1") == "completed"
    assert (event["httpStatus"], event["requestedBy"], event["attempt"]) == (204, "e2e", 1)
    properties = outcomes.properties["ok-1"]  # a terminal outcome's message id is the commandId
    assert properties["correlation_id"] == "ok-1"
    assert properties["subject"] == "terminateTask"
    assert properties["content_type"] == "application/json"
    assert properties["application_properties"]["decision"] == "succeeded"
    assert properties["application_properties"]["jobId"] == "e2e-ok"
    assert properties["application_properties"]["dryRun"] is False


def test_invalid_and_refused_commands_are_dead_lettered_with_reasons(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    emulator(host).seed_job("e2e-dl")
    send(
        sb_client,
        b'{"action": "deleteTask", "jobId": "e2e-dl"}',
        command("terminateTask", "e2e-dl", "missing", "dl-2"),
        message_ids=["dl-1", "dl-2"],
    )
    found = dead_letters(sb_client, {"dl-1", "dl-2"})
    assert found["dl-1"].dead_letter_reason == "InvalidCommand"
    assert "taskId is required for deleteTask" in str(found["dl-1"].dead_letter_error_description)
    assert found["dl-2"].dead_letter_reason == "TaskNotFound"
    assert "terminateTask on job e2e-dl task missing" in str(found["dl-2"].dead_letter_error_description)
    assert outcomes.wait("dl-1", "deadLetter")["deadLetterReason"] == "InvalidCommand"
    assert outcomes.wait("dl-2", "deadLetter")["batchError"]["code"] == "TaskNotFound"


def test_transient_failure_becomes_a_scheduled_copy_that_succeeds_later(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    emulator(host).seed_job("e2e-retry")
    emulator(host).seed_task("e2e-retry", "t1", state="running")
    emulator(host).inject_fault(operation="terminateTask", status=503, code="ServerBusy", count=1, retry_after=1.0)
    send(sb_client, command("terminateTask", "e2e-retry", "t1", "retry-1"))
    retry = outcomes.wait("retry-1", "retry")
    assert host.peer is not None
    scheduled = [m for m in host.peer.messages("batch-commands", state="scheduled") if m["message_id"] == "retry-1#2"]
    assert scheduled, "the retry copy should wait on the queue as a scheduled message"
    assert state(host, "e2e-retry", "t1") == "running"
    done = outcomes.wait("retry-1", "succeeded")
    assert done["attempt"] == 2
    occurred = datetime.fromisoformat(done["occurredAt"].replace("Z", "+00:00"))
    assert occurred >= datetime.fromisoformat(retry["occurredAt"].replace("Z", "+00:00")) + timedelta(seconds=1)
    assert state(host, "e2e-retry", "t1") == "completed"


def test_retries_exhausted_end_in_the_dead_letter_queue(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    emulator(host).seed_job("e2e-exhaust")
    emulator(host).seed_task("e2e-exhaust", "t1", state="running")
    emulator(host).inject_fault(operation="reactivateTask", status=500, code="InternalError", count=100)
    send(sb_client, command("reactivateTask", "e2e-exhaust", "t1", "exhaust-1"))
    final = outcomes.wait("exhaust-1", "deadLetter", timeout=60)
    assert final["deadLetterReason"] == "RetriesExhausted"
    assert final["attempt"] == 8
    found = dead_letters(sb_client, {"exhaust-1#8"})
    assert found["exhaust-1#8"].dead_letter_reason == "RetriesExhausted"
    assert [e["decision"] for e in outcomes.of("exhaust-1")] == ["retry"] * 7 + ["deadLetter"]


def test_duplicate_command_is_dropped_by_duplicate_detection(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    emulator(host).seed_job("e2e-dup")
    emulator(host).seed_task("e2e-dup", "t1", state="completed", exit_code=0)
    body = command("deleteTask", "e2e-dup", "t1", "dup-1")
    send(sb_client, body)
    send(sb_client, body)
    outcomes.wait("dup-1", "succeeded")
    time.sleep(2)  # long enough for a second copy to have been processed, were it delivered
    assert [e["decision"] for e in outcomes.of("dup-1")] == ["succeeded"]


def test_sixteen_concurrent_commands_lose_nothing_and_double_nothing(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    batch = emulator(host)
    batch.seed_job("e2e-many")
    for n in range(16):
        batch.seed_task("e2e-many", f"t{n}", state="running")
    batch.inject_fault(operation="terminateTask", latency=0.2, count=16)  # make them overlap
    deliveries_before = outcomes.deliveries
    send(sb_client, *[command("terminateTask", "e2e-many", f"t{n}", f"many-{n}") for n in range(16)])
    for n in range(16):
        outcomes.wait(f"many-{n}", "succeeded")
    time.sleep(1)
    assert all(len(outcomes.of(f"many-{n}")) == 1 for n in range(16))
    assert outcomes.deliveries - deliveries_before == 16
    assert {state(host, "e2e-many", f"t{n}") for n in range(16)} == {"completed"}


def test_dry_run_reports_and_changes_nothing(host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes) -> None:
    emulator(host).seed_job("e2e-dry")
    emulator(host).seed_task("e2e-dry", "t1", state="completed", exit_code=0)
    send(sb_client, command("reactivateTask", "e2e-dry", "t1", "dry-1", dryRun=True))
    event = outcomes.wait("dry-1", "deadLetter")
    assert event["dryRun"] is True
    assert state(host, "e2e-dry", "t1") == "completed"


def test_alert_becomes_a_command_that_reaches_batch(host: LocalHost, outcomes: Outcomes) -> None:
    emulator(host).seed_job("e2e-alert")
    emulator(host).seed_task("e2e-alert", "t1", state="running")
    assert host.http is not None
    alert = {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": {
                "alertId": "/subscriptions/0000/providers/Microsoft.AlertsManagement/alerts/e2e-alert-1",
                "alertRule": "stuck-task",
                "severity": "Sev3",
                "signalType": "Metric",
                "monitorCondition": "Fired",
                "monitoringService": "Platform",
                "alertTargetIDs": ["/subscriptions/0000/resourceGroups/rg/providers/Microsoft.Batch/batchAccounts/b"],
                "firedDateTime": "2026-11-24T03:00:00.000Z",
                "description": "",
                "essentialsVersion": "1.0",
                "alertContextVersion": "1.0",
            },
            "alertContext": {},
            "customProperties": {"batchAction": "terminateTask", "batchJobId": "e2e-alert", "batchTaskId": "t1"},
        },
    }
    request = urllib.request.Request(
        f"{host.http.url}/api/alerts",
        data=json.dumps(alert).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # a loopback test URL
        assert response.status == 202
        answer = json.loads(response.read())
    (enqueued,) = answer["commands"]
    event = outcomes.wait(enqueued["commandId"], "succeeded")
    assert (event["action"], event["jobId"], event["taskId"]) == ("terminateTask", "e2e-alert", "t1")
    assert state(host, "e2e-alert", "t1") == "completed"


def test_retention_timer_deletes_old_completed_tasks(host: LocalHost, outcomes: Outcomes) -> None:
    batch = emulator(host)
    batch.seed_job("e2e-retention")
    old = datetime.now(UTC) - timedelta(days=30)
    for n in range(5):
        batch.seed_task("e2e-retention", f"old{n}", state="completed", exit_code=0, state_transition_time=old)
    batch.seed_task("e2e-retention", "fresh", state="completed", exit_code=0)
    batch.seed_task("e2e-retention", "busy", state="running", state_transition_time=old)
    assert host.http is not None
    request = urllib.request.Request(f"{host.http.url}/admin/functions/retention_cleanup", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:  # a loopback test URL
        assert response.status == 202
    deadline = time.monotonic() + 30
    while any(state(host, "e2e-retention", f"old{n}") for n in range(5)):
        assert time.monotonic() < deadline, "retention did not delete the old tasks"
        time.sleep(0.1)
    assert state(host, "e2e-retention", "fresh") == "completed"
    assert state(host, "e2e-retention", "busy") == "running"
    deadline = time.monotonic() + 10

    def deleted() -> list[dict[str, Any]]:  # the deletes; the job's per-job selector reports on it too
        return [e for e in outcomes.decided("e2e-retention", "succeeded") if e["taskId"] is not None]

    while len(deleted()) < 5 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sorted(e["taskId"] for e in deleted()) == [f"old{n}" for n in range(5)]


def test_peer_restart_mid_run_loses_nothing_acknowledged(
    host: LocalHost, sb_client: ServiceBusClient, outcomes: Outcomes
) -> None:
    batch = emulator(host)
    batch.seed_job("e2e-restart")
    for n in range(20):
        batch.seed_task("e2e-restart", f"t{n}", state="running")
    batch.inject_fault(operation="terminateTask", latency=0.3, count=20)
    send(sb_client, *[command("terminateTask", "e2e-restart", f"t{n}", f"restart-{n}") for n in range(20)])
    outcomes.wait("restart-0", lambda d: True, timeout=30)

    assert host.peer is not None
    port, db_path = host.peer.port, host.db_path
    host.peer.stop()
    time.sleep(0.5)
    replacement = ServiceBusPeer(port=port, db_path=db_path)
    replacement.start()
    host.peer = replacement
    try:
        for n in range(20):
            outcomes.wait(f"restart-{n}", lambda d: d in ("succeeded", "alreadyDone"), timeout=90)
        assert {state(host, "e2e-restart", f"t{n}") for n in range(20)} == {"completed"}
    finally:
        replacement.stop()
