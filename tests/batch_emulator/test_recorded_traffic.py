"""Headers and bodies the real Batch service was recorded sending, checked over HTTP against the emulator.

Each test names the recorded behaviour it pins. Raw `requests` shows the wire; the SDK calls show that
the real `azure-batch` client still takes the answers.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.batch import models

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import API_VERSION, API_VERSION_2024, ETAG, RFC1123, RawApi, headers_of


def test_get_task_and_reactivate_task_send_no_data_service_id(emu: BatchEmulator, raw: RawApi, client: Any) -> None:
    """Recorded: Task Get 200 and Task Reactivate 204 carry ETag and Last-Modified but no DataServiceId."""
    emu.seed_job("job1")
    emu.seed_task("job1", "t1", state="completed", exit_code=1)
    got = raw.call("GET", "/jobs/job1/tasks/t1")
    assert got.status_code == 200
    assert "DataServiceId" not in got.headers
    assert ETAG.fullmatch(got.headers["ETag"]) and RFC1123.fullmatch(got.headers["Last-Modified"])
    reactivated = raw.call("POST", "/jobs/job1/tasks/t1/reactivate")
    assert reactivated.status_code == 204
    assert "DataServiceId" not in reactivated.headers
    assert ETAG.fullmatch(reactivated.headers["ETag"]) and RFC1123.fullmatch(reactivated.headers["Last-Modified"])
    # Get Job never sent one either.
    assert "DataServiceId" not in raw.call("GET", "/jobs/job1").headers
    # The SDK reads DataServiceId where the spec declares it, and takes its absence.
    emu.seed_task("job1", "t2", state="completed", exit_code=1)
    headers = client.reactivate_task("job1", "t2", cls=headers_of)
    assert headers["DataServiceId"] is None and ETAG.fullmatch(headers["ETag"])


def test_terminate_data_service_id_is_the_action_url(emu: BatchEmulator, raw: RawApi, client: Any) -> None:
    """Recorded: on Terminate the DataServiceId is the URL that was posted to, `.../terminate`."""
    emu.seed_job("job1")
    emu.seed_task("job1", "t1", state="running")
    emu.seed_task("job1", "t2")
    task = raw.call("POST", "/jobs/job1/tasks/t1/terminate")
    assert task.status_code == 204
    assert task.headers["DataServiceId"] == f"{emu.url}/jobs/job1/tasks/t1/terminate"
    sdk = client.terminate_task("job1", "t2", cls=headers_of)
    assert sdk["DataServiceId"] == f"{emu.url}/jobs/job1/tasks/t2/terminate"
    job = raw.call("POST", "/jobs/job1/terminate")
    assert job.status_code == 202
    assert job.headers["DataServiceId"] == f"{emu.url}/jobs/job1/terminate"
    # Update Task acts on the entity itself, so its DataServiceId is the entity URL.
    emu.seed_job("job2")
    emu.seed_task("job2", "t3")
    updated = raw.call("PUT", "/jobs/job2/tasks/t3", json={"constraints": {"maxTaskRetryCount": 1}})
    assert updated.status_code == 200
    assert updated.headers["DataServiceId"] == f"{emu.url}/jobs/job2/tasks/t3"


def test_lists_send_no_etag_or_last_modified(emu: BatchEmulator, raw: RawApi) -> None:
    """Recorded: List Tasks and List Jobs carry no ETag / Last-Modified; single-entity Gets do."""
    emu.seed_job("job1")
    emu.seed_job("job2")
    emu.seed_task("job1", "a")
    emu.seed_task("job1", "b")
    for path in ("/jobs/job1/tasks", "/jobs"):
        first = raw.call("GET", path, params={"maxresults": "1"})
        assert first.status_code == 200 and len(first.json()["value"]) == 1
        following = raw.session.get(first.json()["odata.nextLink"], timeout=10)  # a later page as well
        assert following.status_code == 200 and len(following.json()["value"]) == 1
        for page in (first, following):
            assert "ETag" not in page.headers and "Last-Modified" not in page.headers, path
            assert "DataServiceId" not in page.headers
    for path in ("/jobs/job1/tasks/a", "/jobs/job1"):
        single = raw.call("GET", path)
        assert ETAG.fullmatch(single.headers["ETag"]) and RFC1123.fullmatch(single.headers["Last-Modified"])


def test_add_task_and_add_job_send_location(emu: BatchEmulator, raw: RawApi, client: Any) -> None:
    """Recorded: Add 201s carry Location, the new entity's URL (the same as their DataServiceId)."""
    job = raw.call("POST", "/jobs", json={"id": "Job1", "poolInfo": {"poolId": "p"}})
    assert job.status_code == 201
    assert job.headers["Location"] == job.headers["DataServiceId"] == f"{emu.url}/jobs/Job1"
    task = raw.call("POST", "/jobs/job1/tasks", json={"id": "T1", "commandLine": "/bin/true"})
    assert task.status_code == 201 and task.content == b""
    assert task.headers["Location"] == task.headers["DataServiceId"] == f"{emu.url}/jobs/Job1/tasks/T1"
    assert ETAG.fullmatch(task.headers["ETag"])
    # Other answers have no Location.
    assert "Location" not in raw.call("POST", "/jobs/job1/tasks/t1/terminate").headers
    assert "Location" not in raw.call("GET", "/jobs/job1/tasks/t1").headers
    # The SDK's create calls are unaffected.
    added = client.create_task("job1", models.BatchTaskCreateOptions(id="t2", command_line="x"), cls=headers_of)
    assert added["DataServiceId"] == f"{emu.url}/jobs/Job1/tasks/t2"


def test_failure_info_category_is_user_error(emu: BatchEmulator, raw: RawApi, client: Any) -> None:
    """Recorded: failureInfo.category is `UserError` (the documented ErrorCategory casing) in every answer."""
    emu.seed_job("job1")
    emu.seed_task("job1", "terminated")
    emu.seed_task("job1", "seeded-failure", state="completed", exit_code=2)
    emu.seed_task("job1", "run-failure")
    assert raw.call("POST", "/jobs/job1/tasks/terminated/terminate").status_code == 204
    emu.complete_task("job1", "run-failure", exit_code=3)
    expected = {"terminated": "TaskEnded", "seeded-failure": "FailureExitCode", "run-failure": "FailureExitCode"}
    for task_id, code in expected.items():
        info = raw.call("GET", f"/jobs/job1/tasks/{task_id}").json()["executionInfo"]["failureInfo"]
        assert (info["category"], info["code"]) == ("UserError", code)
    listed = raw.call("GET", "/jobs/job1/tasks").json()["value"]
    assert {task["executionInfo"]["failureInfo"]["category"] for task in listed} == {"UserError"}
    # The SDK's enum spells it "usererror"; for the service's spelling it hands back the plain string.
    category = client.get_task("job1", "terminated").execution_info.failure_info.category
    assert category == "UserError"


@pytest.mark.parametrize("api_version", [API_VERSION, API_VERSION_2024])
def test_add_task_collection_body_has_odata_metadata(emu: BatchEmulator, raw: RawApi, api_version: str) -> None:
    """Recorded: the Add Task Collection answer names its type, `$metadata#taskaddresult`."""
    emu.seed_job("job1")
    body = {"value": [{"id": "a", "commandLine": "x"}, {"id": "a", "commandLine": "x"}]}
    response = raw.call("POST", "/jobs/job1/addtaskcollection", api_version=api_version, json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["odata.metadata"] == f"{emu.url}/$metadata#taskaddresult"
    assert [item["status"] for item in answer["value"]] == ["success", "clienterror"]
    # The per-task BatchError inside keeps no odata.metadata of its own.
    assert "odata.metadata" not in answer["value"][1]["error"]


def test_task_terminated_before_it_ran_shows_empty_node_info(emu: BatchEmulator, raw: RawApi, client: Any) -> None:
    """Recorded: a task terminated before it got a node shows `"nodeInfo": {}` (present, empty)."""
    emu.seed_job("job1")
    emu.seed_task("job1", "never-ran")
    emu.seed_task("job1", "ran", state="running")
    emu.seed_task("job1", "preparing")
    emu.prepare_task("job1", "preparing")
    assert "nodeInfo" not in raw.call("GET", "/jobs/job1/tasks/never-ran").json()  # active: no node yet
    for task_id in ("never-ran", "ran", "preparing"):
        assert raw.call("POST", f"/jobs/job1/tasks/{task_id}/terminate").status_code == 204
    got = raw.call("GET", "/jobs/job1/tasks/never-ran").json()
    assert got["state"] == "completed" and got["nodeInfo"] == {}
    assert "exitCode" not in got["executionInfo"]
    listed = {task["id"]: task for task in raw.call("GET", "/jobs/job1/tasks").json()["value"]}
    assert listed["never-ran"]["nodeInfo"] == {}
    selected = raw.call("GET", "/jobs/job1/tasks/never-ran", params={"$select": "id,nodeInfo"}).json()
    assert selected["nodeInfo"] == {}
    # A task that had a node (running, or preparing on it) keeps that node.
    for task_id in ("ran", "preparing"):
        assert listed[task_id]["nodeInfo"]["nodeId"]
        assert listed[task_id]["executionInfo"]["exitCode"] == 137
    # Through the SDK: node information is there, with nothing in it.
    node_info = client.get_task("job1", "never-ran").node_info
    assert node_info is not None and node_info.node_id is None
