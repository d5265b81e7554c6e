"""Job operations and the job state machine through the real SDK (including its LRO pollers)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.batch import models

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import (
    ETAG,
    RawApi,
    conflict,
    error_code,
    failure,
    headers_of,
    stored,
    stored_job,
    terminate_options,
)


def new_job(job_id: str) -> Any:
    return models.BatchJobCreateOptions(id=job_id, pool_info=models.BatchPoolInfo(pool_id="pool-a"))


def test_add_get_list_jobs(emu: BatchEmulator, client: Any) -> None:
    headers = client.create_job(new_job("job1"), cls=headers_of)
    assert ETAG.fullmatch(headers["ETag"]) and headers["DataServiceId"] == f"{emu.url}/jobs/job1"
    job = client.get_job("job1")
    assert job.state == models.BatchJobState.ACTIVE
    assert job.pool_info.pool_id == "pool-a"
    assert job.execution_info.pool_id == "pool-a"
    assert job.etag == headers["ETag"]
    client.create_job(new_job("job2"))
    assert [j.id for j in client.list_jobs()] == ["job1", "job2"]
    assert conflict(lambda: client.create_job(new_job("JOB1"))) == "JobExists"


def test_add_job_validation(emu: BatchEmulator, raw: RawApi) -> None:
    no_pool = raw.call("POST", "/jobs", json={"id": "job1"})
    assert (no_pool.status_code, error_code(no_pool)) == (400, "MissingRequiredProperty")
    bad_id = raw.call("POST", "/jobs", json={"id": "job 1", "poolInfo": {"poolId": "p"}})
    assert (bad_id.status_code, error_code(bad_id)) == (400, "InvalidPropertyValue")
    not_json = raw.call("POST", "/jobs", data=b"{", headers={"Content-Type": "application/json"})
    assert (not_json.status_code, error_code(not_json)) == (400, "InvalidRequestBody")


def test_terminate_job_with_reason_and_force(emu: BatchEmulator, client: Any, raw: RawApi) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "running", state="running")
    emu.seed_task("job1", "waiting")
    poller = client.begin_terminate_job("job1", terminate_options("nightly stop"), force=True, polling_interval=0.01)
    poller.result(timeout=10)
    job = client.get_job("job1")
    assert job.state == models.BatchJobState.COMPLETED
    assert job.previous_state == models.BatchJobState.TERMINATING
    assert job.execution_info.termination_reason == "nightly stop"
    assert job.execution_info.end_time is not None
    # Running tasks are terminated; active ones stay active (and will never be scheduled).
    assert stored(emu, "job1", "running")["state"] == "completed"
    assert stored(emu, "job1", "waiting")["state"] == "active"
    assert conflict(lambda: client.begin_terminate_job("job1", terminate_options("again"))) == "JobCompleted"


def test_terminate_job_wire_format(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    response = raw.call("POST", "/jobs/job1/terminate", params={"force": "true"})
    assert response.status_code == 202 and response.content == b""
    assert ETAG.fullmatch(response.headers["ETag"])
    assert response.headers["DataServiceId"] == f"{emu.url}/jobs/job1/terminate"
    assert stored_job(emu, "job1")["executionInfo"]["terminateReason"] == "UserTerminate"
    bad_force = raw.call("POST", "/jobs/job1/terminate", params={"force": "maybe"})
    assert (bad_force.status_code, error_code(bad_force)) == (400, "InvalidQueryParameterValue")


def test_terminating_is_observable_and_conflicts(emu: BatchEmulator, client: Any) -> None:
    emu.set_job_transition_delay(terminate=0.4)
    emu.seed_job("job1")
    started = time.monotonic()
    poller = client.begin_terminate_job("job1", terminate_options("slow"), polling_interval=0.05)
    assert client.get_job("job1").state == models.BatchJobState.TERMINATING
    assert conflict(lambda: client.begin_terminate_job("job1", terminate_options("again"))) == "JobBeingTerminated"
    poller.result(timeout=10)
    assert time.monotonic() - started >= 0.4
    assert client.get_job("job1").state == models.BatchJobState.COMPLETED


def test_deleting_is_observable_then_gone(emu: BatchEmulator, client: Any) -> None:
    emu.set_job_transition_delay(delete=0.4)
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    headers = client.begin_delete_job("job1", polling_interval=0.05)
    assert client.get_job("job1").state == models.BatchJobState.DELETING
    assert conflict(lambda: client.begin_delete_job("job1")) == "JobBeingDeleted"
    assert conflict(lambda: client.begin_terminate_job("job1", terminate_options("x"))) == "JobBeingDeleted"
    headers.result(timeout=10)
    assert emu.get_job("job1") is None
    assert emu.get_task("job1", "t1") is None
    assert failure(lambda: client.get_job("job1")) == (404, "JobNotFound")


def test_delete_job_wire_format(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1", state="completed")
    response = raw.call("DELETE", "/jobs/job1", params={"force": "true"})
    assert response.status_code == 202 and response.content == b""
    assert "ETag" not in response.headers and response.headers["request-id"]
    missing = raw.call("DELETE", "/jobs/job1")
    assert (missing.status_code, error_code(missing)) == (404, "JobNotFound")
    missing = raw.call("POST", "/jobs/job1/terminate")
    assert (missing.status_code, error_code(missing)) == (404, "JobNotFound")


@pytest.mark.parametrize("state", ["active", "disabled", "terminating", "completed", "deleting"])
def test_jobs_can_be_seeded_in_any_state(emu: BatchEmulator, client: Any, state: str) -> None:
    emu.seed_job("job1", state=state, terminate_reason="TaskFailed" if state == "completed" else None)
    job = client.get_job("job1")
    assert job.state == state
    if state == "completed":
        assert job.execution_info.termination_reason == "TaskFailed"


def test_a_deleted_job_id_can_be_reused_once_deletion_finished(emu: BatchEmulator, client: Any, raw: RawApi) -> None:
    emu.set_job_transition_delay(delete=0.2)
    emu.seed_job("job1")
    assert raw.call("DELETE", "/jobs/job1").status_code == 202
    assert conflict(lambda: client.create_job(new_job("job1"))) == "JobExists"
    time.sleep(0.25)  # the deletion delay set above, and nothing has looked at the job since
    client.create_job(new_job("job1"))
    assert client.get_job("job1").state == models.BatchJobState.ACTIVE
