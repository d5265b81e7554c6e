"""Task operations through the real azure-batch SDK: success codes, headers, state machine, 404/409s."""

from __future__ import annotations

from typing import Any

import pytest
from azure.batch import models

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import (
    CONTENT_TYPE,
    ETAG,
    RFC1123,
    RawApi,
    conflict,
    error_code,
    failure,
    headers_of,
    not_found,
    stored,
    terminate_options,
)


def new_task(task_id: str, **kwargs: Any) -> Any:
    return models.BatchTaskCreateOptions(id=task_id, command_line="/bin/true", **kwargs)


def test_add_get_and_headers(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    added = client.create_task("job1", new_task("t1"), cls=headers_of)
    assert ETAG.fullmatch(added["ETag"])
    assert added["Last-Modified"].tzinfo is not None  # the SDK parsed the RFC 1123 date
    assert added["DataServiceId"] == f"{emu.url}/jobs/job1/tasks/t1"
    got = client.get_task("job1", "t1")
    assert got.state == models.BatchTaskState.ACTIVE
    assert got.etag == added["ETag"]
    assert got.url == f"{emu.url}/jobs/job1/tasks/t1"
    assert got.execution_info.retry_count == 0
    assert got.constraints.max_task_retry_count == 0


def test_wire_format_of_get_and_error(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    ok = raw.call("GET", "/jobs/job1/tasks/t1")
    assert ok.status_code == 200
    assert ok.headers["Content-Type"] == CONTENT_TYPE
    assert ok.json()["odata.metadata"].endswith("$metadata#tasks/@Element")
    assert ETAG.fullmatch(ok.headers["ETag"]) and ok.headers["ETag"] == ok.json()["eTag"]
    assert RFC1123.fullmatch(ok.headers["Last-Modified"])
    assert "client-request-id" not in ok.headers
    assert len(ok.headers["request-id"]) == 36
    missing = raw.call("GET", "/jobs/job1/tasks/nope")
    body = missing.json()
    assert (missing.status_code, body["code"]) == (404, "TaskNotFound")
    assert body["message"]["lang"] == "en-US"
    assert f"RequestId:{missing.headers['request-id']}" in body["message"]["value"]
    assert body["odata.metadata"].endswith("Container.errors/@Element")
    assert missing.headers["Content-Type"] == CONTENT_TYPE


def test_client_request_id_is_echoed_only_on_request(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    quiet = client.terminate_task("job1", "t1", cls=headers_of)
    assert quiet.get("client-request-id") is None
    emu.seed_task("job1", "t2")
    echoed = client.terminate_task(
        "job1",
        "t2",
        cls=headers_of,
        headers={"client-request-id": "1b4a5f3e-0a1c-4b7a-9d55-3c1f0e8f1a22", "return-client-request-id": "true"},
    )
    assert echoed["client-request-id"] == "1b4a5f3e-0a1c-4b7a-9d55-3c1f0e8f1a22"


def test_task_state_machine_success_path(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    client.create_task("job1", new_task("t1"))
    emu.prepare_task("job1", "t1")
    assert client.get_task("job1", "t1").state == models.BatchTaskState.PREPARING
    assert conflict(lambda: client.reactivate_task("job1", "t1")) == "TaskNotCompleted"
    running = emu.start_task("job1", "t1")
    assert running["state"] == "running" and running["previousState"] == "preparing"
    assert client.get_task("job1", "t1").state == models.BatchTaskState.RUNNING
    emu.complete_task("job1", "t1", exit_code=0)
    task = client.get_task("job1", "t1")
    assert task.state == models.BatchTaskState.COMPLETED
    assert task.execution_info.result == models.BatchTaskExecutionResult.SUCCESS
    assert task.execution_info.exit_code == 0
    assert task.execution_info.failure_info is None


def test_failed_run_retries_then_fails_with_failure_info(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    constraints = models.BatchTaskConstraints(max_task_retry_count=1)
    client.create_task("job1", new_task("t1", constraints=constraints))
    emu.complete_task("job1", "t1", exit_code=3)
    retried = client.get_task("job1", "t1")
    assert retried.state == models.BatchTaskState.ACTIVE
    assert retried.execution_info.retry_count == 1
    emu.complete_task("job1", "t1", exit_code=3)
    failed = client.get_task("job1", "t1")
    assert failed.state == models.BatchTaskState.COMPLETED
    assert failed.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert failed.execution_info.exit_code == 3
    assert failed.execution_info.failure_info.code == "FailureExitCode"


def test_terminate_running_task_then_reactivate(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1", state="running", retry_count=2, max_task_retry_count=5)
    headers = client.terminate_task("job1", "t1", cls=headers_of)
    assert ETAG.fullmatch(headers["ETag"]) and headers["DataServiceId"].endswith("/jobs/job1/tasks/t1/terminate")
    terminated = client.get_task("job1", "t1")
    assert terminated.state == models.BatchTaskState.COMPLETED
    assert terminated.execution_info.result == models.BatchTaskExecutionResult.FAILURE
    assert terminated.execution_info.failure_info.code == "TaskEnded"
    assert terminated.execution_info.exit_code is not None
    assert conflict(lambda: client.terminate_task("job1", "t1")) == "TaskCompleted"
    client.reactivate_task("job1", "t1")
    active = client.get_task("job1", "t1")
    assert active.state == models.BatchTaskState.ACTIVE
    assert active.execution_info.retry_count == 0
    assert active.execution_info.exit_code is None
    assert active.etag != terminated.etag


def test_reactivate_refusals_come_from_task_state(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "active")
    emu.seed_task("job1", "running", state="running")
    emu.seed_task("job1", "ok", state="completed", exit_code=0)
    emu.seed_task("job1", "bad", state="completed", exit_code=1)
    assert conflict(lambda: client.reactivate_task("job1", "active")) == "TaskNotCompleted"
    assert conflict(lambda: client.reactivate_task("job1", "running")) == "TaskNotCompleted"
    assert conflict(lambda: client.reactivate_task("job1", "ok")) == "TaskSucceeded"
    client.reactivate_task("job1", "bad")
    assert stored(emu, "job1", "bad")["state"] == "active"


def test_update_task_constraints(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    before = client.get_task("job1", "t1")
    patch = models.BatchTask(constraints=models.BatchTaskConstraints(max_task_retry_count=4))
    headers = client.replace_task("job1", "t1", patch, cls=headers_of)
    after = client.get_task("job1", "t1")
    assert after.constraints.max_task_retry_count == 4
    assert after.etag == headers["ETag"] != before.etag
    emu.complete_task("job1", "t1", exit_code=0)
    assert conflict(lambda: client.replace_task("job1", "t1", patch)) == "TaskCompleted"


def test_update_task_with_2024_body(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    response = raw.call(
        "PUT",
        "/jobs/job1/tasks/t1",
        api_version="2024-07-01.20.0",
        json={"constraints": {"maxTaskRetryCount": 2}},
    )
    assert response.status_code == 200 and response.content == b""
    assert response.headers["ETag"] == stored(emu, "job1", "t1")["eTag"]
    assert stored(emu, "job1", "t1")["constraints"]["maxTaskRetryCount"] == 2


def test_delete_task(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1", state="running")
    headers = client.delete_task("job1", "t1", cls=headers_of)
    assert "ETag" not in headers and headers["request-id"]
    assert emu.get_task("job1", "t1") is None
    assert not_found(lambda: client.delete_task("job1", "t1")) == "TaskNotFound"


def test_not_found_codes(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    assert not_found(lambda: client.get_task("job1", "missing")) == "TaskNotFound"
    assert not_found(lambda: client.terminate_task("job1", "missing")) == "TaskNotFound"
    assert not_found(lambda: client.reactivate_task("job1", "missing")) == "TaskNotFound"
    assert not_found(lambda: client.get_task("nojob", "t1")) == "JobNotFound"
    assert not_found(lambda: client.create_task("nojob", new_task("t1"))) == "JobNotFound"
    assert not_found(lambda: list(client.list_tasks("nojob"))) == "JobNotFound"


def test_ids_are_case_insensitive_and_case_preserving(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("Job1")
    client.create_task("job1", new_task("Task-A"))
    assert client.get_task("JOB1", "task-a").id == "Task-A"
    assert conflict(lambda: client.create_task("job1", new_task("TASK-a"))) == "TaskExists"


@pytest.mark.parametrize("bad_id", ["has space", "x" * 65, "dot.dot", ""])
def test_invalid_task_id_is_refused(emu: BatchEmulator, client: Any, bad_id: str) -> None:
    emu.seed_job("job1")
    assert failure(lambda: client.create_task("job1", new_task(bad_id))) == (400, "InvalidPropertyValue")


def test_missing_command_line_is_refused(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    response = raw.call("POST", "/jobs/job1/tasks", json={"id": "t1"})
    assert (response.status_code, error_code(response)) == (400, "MissingRequiredProperty")


def test_add_task_collection_reports_per_task(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "dup")
    group = models.BatchTaskGroup(task_values=[new_task(f"t{i}") for i in range(5)] + [new_task("dup")])
    result = client.create_task_collection("job1", group)
    by_id = {item.task_id: item for item in result.result_values}
    assert {by_id[f"t{i}"].status for i in range(5)} == {models.BatchTaskAddStatus.SUCCESS}
    assert by_id["t0"].location == f"{emu.url}/jobs/job1/tasks/t0"
    assert ETAG.fullmatch(by_id["t0"].etag)
    assert by_id["dup"].status == models.BatchTaskAddStatus.CLIENT_ERROR
    assert by_id["dup"].error.code == "TaskExists"


def test_add_task_collection_limits(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    too_many = {"value": [{"id": f"t{i}", "commandLine": "x"} for i in range(101)]}
    response = raw.call("POST", "/jobs/job1/addtaskcollection", json=too_many)
    assert response.status_code == 400
    too_big = {"value": [{"id": f"t{i}", "commandLine": "x" * 11_000} for i in range(100)]}
    response = raw.call("POST", "/jobs/job1/addtaskcollection", json=too_big)
    assert (response.status_code, error_code(response)) == (413, "RequestBodyTooLarge")
    assert emu.get_task("job1", "t0") is None


def test_add_task_collection_headers_differ_by_version(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    body = {"value": [{"id": "a", "commandLine": "x"}]}
    new = raw.call("POST", "/jobs/job1/addtaskcollection", json=body)
    assert new.status_code == 200 and ETAG.fullmatch(new.headers["ETag"])
    body = {"value": [{"id": "b", "commandLine": "x"}]}
    old = raw.call("POST", "/jobs/job1/addtaskcollection", api_version="2024-07-01.20.0", json=body)
    assert old.status_code == 200 and "ETag" not in old.headers
    assert old.json()["value"][0]["status"] == "success"


def test_sdk_create_tasks_chunks_a_large_list(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    result = client.create_tasks("job1", [new_task(f"t{i:03}") for i in range(250)])
    assert len(result.result_values) == 250
    assert len(list(client.list_tasks("job1"))) == 250


def test_multi_instance_subtasks(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    settings = models.MultiInstanceSettings(number_of_instances=3, coordination_command_line="/bin/true")
    client.create_task("job1", new_task("mpi", multi_instance_settings=settings))
    assert list(client.list_subtasks("job1", "mpi")) == []
    emu.start_task("job1", "mpi")
    running = list(client.list_subtasks("job1", "mpi"))
    assert [(sub.id, sub.state) for sub in running] == [(1, "running"), (2, "running")]
    emu.complete_task("job1", "mpi", exit_code=0)
    done = list(client.list_subtasks("job1", "mpi"))
    assert {(sub.state, sub.exit_code, sub.result) for sub in done} == {("completed", 0, "success")}
    emu.seed_task("job1", "plain")
    assert list(client.list_subtasks("job1", "plain")) == []
    assert not_found(lambda: list(client.list_subtasks("job1", "nope"))) == "TaskNotFound"


def test_task_operations_refused_by_job_state(emu: BatchEmulator, client: Any) -> None:
    emu.set_job_transition_delay(terminate=30, delete=30)
    emu.seed_job("job1")
    emu.seed_task("job1", "failed", state="completed", exit_code=1)
    emu.seed_task("job1", "active")
    client.begin_terminate_job("job1", terminate_options("stop"), polling_interval=0.05)
    assert client.get_job("job1").state == models.BatchJobState.TERMINATING
    assert conflict(lambda: client.create_task("job1", new_task("new"))) == "JobBeingTerminated"
    assert conflict(lambda: client.reactivate_task("job1", "failed")) == "JobBeingTerminated"
    assert conflict(lambda: client.terminate_task("job1", "active")) == "JobBeingTerminated"
    assert conflict(lambda: client.delete_task("job1", "active")) == "JobBeingTerminated"
    client.begin_delete_job("job1", polling_interval=0.05)
    assert client.get_job("job1").state == models.BatchJobState.DELETING
    assert conflict(lambda: client.reactivate_task("job1", "failed")) == "JobBeingDeleted"
    assert conflict(lambda: client.terminate_task("job1", "active")) == "JobBeingDeleted"
    assert conflict(lambda: client.delete_task("job1", "active")) == "JobBeingDeleted"
    assert conflict(lambda: client.create_task("job1", new_task("new"))) == "JobBeingDeleted"


def test_task_operations_in_a_completed_job(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "failed", state="completed", exit_code=1)
    emu.seed_task("job1", "active")
    client.begin_terminate_job("job1", terminate_options("done"), polling_interval=0.01).result()
    assert client.get_job("job1").state == models.BatchJobState.COMPLETED
    assert conflict(lambda: client.create_task("job1", new_task("new"))) == "JobCompleted"
    assert conflict(lambda: client.reactivate_task("job1", "failed")) == "JobCompleted"
    assert conflict(lambda: client.terminate_task("job1", "active")) == "JobCompleted"
    client.delete_task("job1", "failed")  # clean-up of a finished job's tasks stays possible
    assert emu.get_task("job1", "failed") is None


def test_task_id_of_job_preparation_or_release_task_is_refused(emu: BatchEmulator, raw: RawApi) -> None:
    job = {
        "id": "job1",
        "poolInfo": {"poolId": "p"},
        "jobPreparationTask": {"id": "prep", "commandLine": "/bin/true"},
        "jobReleaseTask": {"commandLine": "/bin/true"},  # default id: jobrelease
    }
    assert raw.call("POST", "/jobs", json=job).status_code == 201
    for task_id, code in (("PREP", "TaskIdSameAsJobPreparationTask"), ("jobrelease", "TaskIdSameAsJobReleaseTask")):
        response = raw.call("POST", "/jobs/job1/tasks", json={"id": task_id, "commandLine": "x"})
        assert (response.status_code, error_code(response)) == (409, code)


def test_no_content_answers_carry_no_length_and_keep_the_connection(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1")
    terminated = raw.call("POST", "/jobs/job1/tasks/t1/terminate")
    assert terminated.status_code == 204 and "Content-Length" not in terminated.headers
    assert raw.call("GET", "/jobs/job1/tasks/t1").json()["state"] == "completed"  # same keep-alive connection
