"""Injected faults as a real client sees them: error answers, Retry-After, latency, dropped connections."""

from __future__ import annotations

import time
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.identity import ManagedIdentityCredential

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import RawApi, error_code, failure, make_client, stored


@pytest.fixture
def job(emu: BatchEmulator) -> BatchEmulator:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    return emu


@pytest.fixture
def no_retry_client(emu: BatchEmulator, credential: ManagedIdentityCredential) -> Any:
    return make_client(emu.url, credential, retry_total=0)


def test_error_n_times_is_retried_by_the_sdk(job: BatchEmulator, client: Any) -> None:
    job.inject_fault(operation="terminateTask", status=503, code="ServerBusy", count=2)
    client.terminate_task("job1", "t1")  # azure-core retries POST on 503
    assert job.request_count == 3
    assert job.faults.fired == 2
    assert stored(job, "job1", "t1")["state"] == "completed"


def test_error_surfaces_when_retries_run_out(job: BatchEmulator, no_retry_client: Any) -> None:
    job.inject_fault(operation="terminateTask", status=503, code="ServerBusy", count=1)
    assert failure(lambda: no_retry_client.terminate_task("job1", "t1")) == (503, "ServerBusy")
    assert stored(job, "job1", "t1")["state"] == "active"  # the faulted request changed nothing
    no_retry_client.terminate_task("job1", "t1")


def test_retry_after_makes_the_sdk_retry_a_429_post(job: BatchEmulator, client: Any, raw: RawApi) -> None:
    job.inject_fault(operation="reactivateTask", status=429, count=1, retry_after=0)
    seen = raw.call("POST", "/jobs/job1/tasks/t1/reactivate")
    assert (seen.status_code, error_code(seen), seen.headers["Retry-After"]) == (429, "TooManyRequests", "0")
    job.inject_fault(operation="terminateTask", status=429, count=1, retry_after=0)
    client.terminate_task("job1", "t1")
    assert job.faults.fired == 2


def test_429_without_retry_after_is_not_retried_on_post(job: BatchEmulator, client: Any) -> None:
    job.inject_fault(operation="terminateTask", status=429, code="TooManyRequests", count=1)
    assert failure(lambda: client.terminate_task("job1", "t1")) == (429, "TooManyRequests")
    assert job.request_count == 1


def test_probability_one_always_and_zero_never(job: BatchEmulator, no_retry_client: Any) -> None:
    job.inject_fault(operation="getJob", status=500, code="OperationTimedOut", probability=1.0)
    for _ in range(3):
        assert failure(lambda: no_retry_client.get_job("job1")) == (500, "OperationTimedOut")
    job.clear_faults()
    job.inject_fault(operation="getJob", status=500, probability=0.0)
    for _ in range(5):
        assert no_retry_client.get_job("job1").id == "job1"


def test_probability_half_fires_about_half_the_time(job: BatchEmulator, raw: RawApi) -> None:
    job.inject_fault(operation="getTask", status=503, probability=0.5)
    statuses = [raw.call("GET", "/jobs/job1/tasks/t1").status_code for _ in range(200)]
    assert set(statuses) == {200, 503}
    assert 60 <= statuses.count(503) <= 140


def test_added_latency(job: BatchEmulator, client: Any) -> None:
    job.inject_fault(operation="getTask", latency=0.3, count=1)
    started = time.monotonic()
    assert client.get_task("job1", "t1").id == "t1"
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    client.get_task("job1", "t1")
    assert time.monotonic() - started < 0.3


def test_latency_with_an_error(job: BatchEmulator, no_retry_client: Any) -> None:
    job.inject_fault(operation="*", status=500, code="InternalError", latency=0.2, count=1)
    started = time.monotonic()
    assert failure(lambda: no_retry_client.list_jobs().next()) == (500, "InternalError")
    assert time.monotonic() - started >= 0.2


def test_dropped_connection_is_retried_by_the_sdk(job: BatchEmulator, client: Any) -> None:
    job.inject_fault(operation="getTask", drop_connection=True, count=1)
    assert client.get_task("job1", "t1").id == "t1"
    assert job.request_count == 2


def test_dropped_connection_surfaces_without_retries(job: BatchEmulator, no_retry_client: Any) -> None:
    job.inject_fault(operation="deleteTask", drop_connection=True, count=1)
    with pytest.raises((ServiceResponseError, ServiceRequestError)):
        no_retry_client.delete_task("job1", "t1")
    assert stored(job, "job1", "t1")["state"] == "active"


def test_faults_only_hit_their_operation(job: BatchEmulator, no_retry_client: Any) -> None:
    job.inject_fault(operation="deleteJob", status=503, count=1)
    assert no_retry_client.get_task("job1", "t1").id == "t1"
    assert job.faults.fired == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"operation": "noSuchOp", "status": 500},
        {"operation": "getTask"},
        {"operation": "getTask", "status": 200},
        {"operation": "getTask", "status": 500, "probability": 1.5},
        {"operation": "getTask", "status": 500, "count": 0},
    ],
)
def test_nonsense_faults_are_rejected(emu: BatchEmulator, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"."):
        emu.inject_fault(**kwargs)


def test_http_error_class_for_unmapped_statuses(job: BatchEmulator, no_retry_client: Any) -> None:
    job.inject_fault(operation="getTask", status=502, count=1)
    with pytest.raises(HttpResponseError) as caught:
        no_retry_client.get_task("job1", "t1")
    assert caught.value.status_code == 502
