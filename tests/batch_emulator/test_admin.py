"""The /_emulator/ control API over HTTP, and the Python control calls it mirrors."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import requests

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import RawApi, error_code, stored, stored_job


def admin(emu: BatchEmulator, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(method, f"{emu.url}/_emulator/{path}", json=body, timeout=5)


def test_seed_job_and_tasks_over_http(emu: BatchEmulator, raw: RawApi) -> None:
    created = admin(emu, "POST", "jobs", {"id": "job1", "state": "active", "poolId": "p1"})
    assert created.status_code == 201 and created.json()["poolInfo"] == {"poolId": "p1"}
    one = admin(emu, "POST", "jobs/job1/tasks", {"id": "t1", "state": "completed", "exitCode": 3})
    assert one.json() == {"count": 1}
    many = [{"id": f"m{i}", "state": "completed", "stateTransitionTime": "2024-01-01T00:00:00Z"} for i in range(5)]
    assert admin(emu, "POST", "jobs/job1/tasks", {"value": many}).json() == {"count": 5}
    task = raw.call("GET", "/jobs/job1/tasks/t1").json()
    assert (task["state"], task["executionInfo"]["result"], task["executionInfo"]["exitCode"]) == (
        "completed",
        "failure",
        3,
    )
    old = raw.call("GET", "/jobs/job1/tasks", params={"$filter": "stateTransitionTime lt '2024-06-01T00:00:00Z'"})
    assert len(old.json()["value"]) == 5
    assert admin(emu, "GET", "jobs/job1/tasks/m0").json()["stateTransitionTime"].startswith("2024-01-01T00:00:00")
    assert admin(emu, "GET", "jobs/job1").json()["id"] == "job1"


def test_task_runs_over_http(emu: BatchEmulator) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    assert admin(emu, "POST", "jobs/job1/tasks/t1/prepare").json()["state"] == "preparing"
    assert admin(emu, "POST", "jobs/job1/tasks/t1/start").json()["state"] == "running"
    done = admin(emu, "POST", "jobs/job1/tasks/t1/complete", {"exitCode": 0}).json()
    assert (done["state"], done["executionInfo"]["result"]) == ("completed", "success")
    again = admin(emu, "POST", "jobs/job1/tasks/t1/start")
    assert again.status_code == 409


def test_faults_delays_stats_reset_over_http(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    fault = {"operation": "getJob", "status": 503, "code": "ServerBusy", "count": 1, "retryAfter": 2}
    assert admin(emu, "POST", "faults", fault).status_code == 201
    listed = admin(emu, "GET", "faults").json()["value"]
    assert listed == [{"id": listed[0]["id"], **fault, "probability": None, "latency": None, "dropConnection": False}]
    throttled = raw.call("GET", "/jobs/job1")
    assert (throttled.status_code, error_code(throttled), throttled.headers["Retry-After"]) == (503, "ServerBusy", "2")
    assert admin(emu, "GET", "stats").json() == {"requestCount": 1, "faultsFired": 1}
    delays = admin(emu, "PUT", "transition-delays", {"terminate": 5, "delete": 1.5}).json()
    assert delays == {"terminate": 5.0, "delete": 1.5}
    raw.call("POST", "/jobs/job1/terminate")
    assert stored_job(emu, "job1")["state"] == "terminating"
    admin(emu, "POST", "faults", {"operation": "getJob", "latency": 0.01})
    assert admin(emu, "DELETE", "faults").status_code == 200
    assert admin(emu, "GET", "faults").json() == {"value": []}
    assert admin(emu, "POST", "reset").status_code == 200
    assert emu.get_job("job1") is None
    assert admin(emu, "GET", "stats").json() == {"requestCount": 0, "faultsFired": 0}


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("GET", "nowhere", None, 404),
        ("POST", "jobs", {"state": "active"}, 400),
        ("POST", "jobs", {"id": "job1", "state": "exploded"}, 409),
        ("POST", "jobs", {"id": "job1", "colour": "blue"}, 400),
        ("POST", "jobs/nojob/tasks", {"id": "t1"}, 404),
        ("POST", "faults", {"operation": "getJob"}, 400),
        ("GET", "jobs/nojob", None, 404),
    ],
)
def test_admin_refusals(emu: BatchEmulator, method: str, path: str, body: dict[str, Any] | None, status: int) -> None:
    assert admin(emu, method, path, body).status_code == status


def test_python_seeding_with_past_times(emu: BatchEmulator) -> None:
    when = datetime(2023, 5, 1, 12, 30, tzinfo=UTC)
    emu.seed_job("job1", state="completed", creation_time=when, state_transition_time=when)
    job = emu.get_job("job1")
    assert job is not None and job["stateTransitionTime"] == "2023-05-01T12:30:00.000000Z"
    task = emu.seed_task("job1", "t1", state="completed", exit_code=0, state_transition_time=when, creation_time=when)
    assert (task["creationTime"], task["executionInfo"]["result"]) == ("2023-05-01T12:30:00.000000Z", "success")
    assert emu.get_task("job1", "missing") is None and emu.get_task("nojob", "t1") is None
    returned = stored(emu, "job1", "t1")
    returned["state"] = "tampered"  # callers get copies, never the emulator's own state
    assert stored(emu, "job1", "t1")["state"] == "completed"


def test_seeding_errors(emu: BatchEmulator) -> None:
    with pytest.raises(ValueError, match="state"):
        emu.seed_job("job1", state="sleeping")
    emu.seed_job("job1")
    with pytest.raises(ValueError, match="state"):
        emu.seed_task("job1", "t1", state="paused")
    with pytest.raises(ValueError, match="id"):
        emu.seed_task("job1", "bad id")
    emu.seed_task("job1", "t1", state="completed")
    with pytest.raises(ValueError, match="completed"):
        emu.complete_task("job1", "t1", exit_code=0)
