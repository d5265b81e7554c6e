"""Fleet operations (issue #12): Delete Job in every state, Get Task Counts, List Jobs `$filter`, job
state history, and the job seeding helpers. Real HTTP, and the real azure-batch SDK where it has the call.

The facts each test pins, with their sources, are in docs/batch-facts.md.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from azure.batch import models

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import (
    API_VERSION,
    API_VERSION_2024,
    CONTENT_TYPE,
    RawApi,
    conflict,
    error_code,
    failure,
    not_found,
    stored,
    stored_job,
    terminate_options,
)

OLD = datetime(2024, 1, 1, tzinfo=UTC)
MID = datetime(2024, 6, 1, tzinfo=UTC)
NEW = datetime(2025, 1, 1, tzinfo=UTC)


def admin(emu: BatchEmulator, method: str, path: str, body: dict[str, Any] | None = None) -> requests.Response:
    return requests.request(method, f"{emu.url}/_emulator/{path}", json=body, timeout=10)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# ---- Delete Job ---------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["active", "disabling", "disabled", "enabling", "terminating", "completed"])
def test_delete_job_is_accepted_in_every_state_but_deleting(emu: BatchEmulator, raw: RawApi, state: str) -> None:
    emu.seed_job("job1", state=state)
    emu.seed_tasks("job1", [{"id": "a"}, {"id": "b", "state": "completed"}])
    response = raw.call("DELETE", "/jobs/job1")
    assert (response.status_code, response.content) == (202, b"")
    # No delay configured: the job and its tasks are gone at once.
    gone = raw.call("GET", "/jobs/job1")
    assert (gone.status_code, error_code(gone)) == (404, "JobNotFound")
    tasks = raw.call("GET", "/jobs/job1/tasks")
    assert (tasks.status_code, error_code(tasks)) == (404, "JobNotFound")
    assert raw.call("GET", "/jobs").json()["value"] == []


def test_delete_of_a_deleting_job_conflicts(emu: BatchEmulator, client: Any, raw: RawApi) -> None:
    emu.seed_job("job1", state="deleting")
    response = raw.call("DELETE", "/jobs/job1", params={"force": "true"})
    assert (response.status_code, error_code(response)) == (409, "JobBeingDeleted")
    assert conflict(lambda: client.begin_delete_job("job1")) == "JobBeingDeleted"
    assert stored_job(emu, "job1")["state"] == "deleting"  # a seeded deleting job stays deleting


def test_delete_job_through_the_sdk_with_force(emu: BatchEmulator, client: Any) -> None:
    emu.seed_jobs([{"id": f"job{i}", "tasks": [{"id": "t1", "state": "running"}]} for i in range(3)])
    client.begin_delete_job("job1", force=True, polling_interval=0.01).result(timeout=10)
    assert [job.id for job in client.list_jobs()] == ["job0", "job2"]
    assert not_found(lambda: client.get_job_task_counts("job1")) == "JobNotFound"
    assert not_found(lambda: client.begin_delete_job("job1")) == "JobNotFound"


def test_deleting_terminates_running_tasks_then_removes_everything(emu: BatchEmulator, client: Any) -> None:
    emu.set_job_transition_delay(delete=0.3)
    emu.seed_job("job1")
    emu.seed_tasks(
        "job1",
        [
            {"id": "waiting"},
            {"id": "preparing", "state": "preparing"},
            {"id": "running", "state": "running"},
            {"id": "done", "state": "completed", "exit_code": 0},
        ],
    )
    poller = client.begin_delete_job("job1", polling_interval=0.05)
    job = client.get_job("job1")
    assert (job.state, job.previous_state) == (models.BatchJobState.DELETING, models.BatchJobState.ACTIVE)
    for task_id in ("preparing", "running"):
        task = stored(emu, "job1", task_id)
        assert task["state"] == "completed"
        assert task["executionInfo"]["failureInfo"]["code"] == "TaskEnded"
    assert stored(emu, "job1", "waiting")["state"] == "active"
    assert stored(emu, "job1", "done")["executionInfo"]["result"] == "success"
    # Reads still work while the job is deleting; changes are refused.
    counts = client.get_job_task_counts("job1").task_counts
    assert (counts.active, counts.running, counts.completed) == (1, 0, 3)
    assert conflict(lambda: client.terminate_task("job1", "waiting")) == "JobBeingDeleted"
    poller.result(timeout=10)
    assert emu.get_job("job1") is None and emu.get_task("job1", "waiting") is None


def test_delete_job_fault_injection(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    emu.inject_fault(operation="deleteJob", status=503)
    busy = raw.call("DELETE", "/jobs/job1")
    assert (busy.status_code, error_code(busy)) == (503, "ServerBusy")
    assert stored_job(emu, "job1")["state"] == "active"  # an injected fault changes nothing
    assert raw.call("DELETE", "/jobs/job1").status_code == 202


# ---- Get Task Counts ----------------------------------------------------------------------------


def test_task_counts_through_the_sdk(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_tasks(
        "job1",
        [
            {"id": "a1"},
            {"id": "a2"},
            {"id": "p1", "state": "preparing"},
            {"id": "r1", "state": "running"},
            {"id": "ok1", "state": "completed", "exit_code": 0},
            {"id": "ok2", "state": "completed"},
            {"id": "bad", "state": "completed", "exit_code": 3},
        ],
    )
    client.create_task("job1", models.BatchTaskCreateOptions(id="wide", command_line="/bin/true", required_slots=4))
    result = client.get_job_task_counts("job1")
    assert isinstance(result, models.BatchTaskCountsResult)
    counts, slots = result.task_counts, result.task_slot_counts
    # Preparing counts as running; succeeded + failed split the completed tasks by result.
    assert (counts.active, counts.running, counts.completed, counts.succeeded, counts.failed) == (3, 2, 3, 2, 1)
    assert (slots.active, slots.running, slots.completed, slots.succeeded, slots.failed) == (6, 2, 3, 2, 1)


def test_task_counts_follow_every_task_change(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_tasks("job1", [{"id": f"t{i}"} for i in range(4)])

    def counts() -> tuple[int, int, int, int, int]:
        c = client.get_job_task_counts("job1").task_counts
        return c.active, c.running, c.completed, c.succeeded, c.failed

    assert counts() == (4, 0, 0, 0, 0)
    emu.start_task("job1", "t0")
    emu.prepare_task("job1", "t1")
    assert counts() == (2, 2, 0, 0, 0)
    emu.complete_task("job1", "t0", exit_code=0)
    client.terminate_task("job1", "t2")
    assert counts() == (1, 1, 2, 1, 1)
    client.reactivate_task("job1", "t2")
    client.delete_task("job1", "t3")
    assert counts() == (1, 1, 1, 1, 0)


def test_task_counts_wire_format_and_errors(emu: BatchEmulator, raw: RawApi) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "t1", state="completed", exit_code=1)
    for version in (API_VERSION, API_VERSION_2024):
        response = raw.call("GET", "/jobs/job1/taskcounts", api_version=version)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE
        assert "ETag" not in response.headers and "Last-Modified" not in response.headers
        body = response.json()
        assert body["taskCounts"] == {"active": 0, "running": 0, "completed": 1, "succeeded": 0, "failed": 1}
        assert body["taskSlotCounts"] == body["taskCounts"]
        assert body["odata.metadata"] == f"{emu.url}/$metadata#taskcounts/@Element"
    missing = raw.call("GET", "/jobs/nojob/taskcounts")
    assert (missing.status_code, error_code(missing)) == (404, "JobNotFound")
    wrong_verb = raw.call("POST", "/jobs/job1/taskcounts")
    assert (wrong_verb.status_code, error_code(wrong_verb)) == (405, "UnsupportedHttpVerb")
    emu.inject_fault(operation="getJobTaskCounts", status=500)
    broken = raw.call("GET", "/jobs/job1/taskcounts")
    assert (broken.status_code, error_code(broken)) == (500, "InternalError")
    assert emu.get_task_counts("job1") == {"taskCounts": body["taskCounts"], "taskSlotCounts": body["taskCounts"]}
    assert emu.get_task_counts("nojob") is None


def test_task_counts_of_an_empty_job(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1", state="completed")
    counts = client.get_job_task_counts("job1").task_counts
    assert (counts.active, counts.running, counts.completed, counts.succeeded, counts.failed) == (0, 0, 0, 0, 0)


# ---- List Jobs $filter --------------------------------------------------------------------------


@pytest.fixture
def fleet(emu: BatchEmulator) -> BatchEmulator:
    """Jobs in several states, entered at three different times, under two id prefixes."""
    emu.seed_jobs(
        [
            {"id": "nightly-a", "state": "completed", "state_transition_time": OLD, "creation_time": OLD},
            {"id": "nightly-b", "state": "completed", "state_transition_time": NEW, "creation_time": OLD},
            {"id": "nightly-c", "state": "active", "creation_time": MID},
            {"id": "adhoc-a", "state": "completed", "state_transition_time": MID, "creation_time": MID},
            {"id": "adhoc-b", "state": "disabled", "state_transition_time": OLD, "creation_time": OLD},
            {"id": "adhoc-c", "state": "terminating", "state_transition_time": NEW, "pool_id": "gpu-pool"},
        ]
    )
    return emu


def job_ids(client: Any, expression: str, **kwargs: Any) -> list[str]:
    return [job.id for job in client.list_jobs(filter=expression, **kwargs)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("state eq 'completed'", ["adhoc-a", "nightly-a", "nightly-b"]),
        ("state ne 'completed'", ["adhoc-b", "adhoc-c", "nightly-c"]),
        ("startswith(id, 'nightly-')", ["nightly-a", "nightly-b", "nightly-c"]),
        ("startswith(id,'NIGHTLY') and state eq 'completed'", ["nightly-a", "nightly-b"]),
        ("id eq 'ADHOC-B' or id ge 'nightly-c'", ["adhoc-b", "nightly-c"]),
        ("id gt 'adhoc-a' and id lt 'nightly-a'", ["adhoc-b", "adhoc-c"]),
        ("id ne 'adhoc-a' and id le 'adhoc-c'", ["adhoc-b", "adhoc-c"]),
        (
            "state eq 'completed' and stateTransitionTime lt datetime'2024-12-01T00:00:00Z'",
            ["adhoc-a", "nightly-a"],
        ),
        ("stateTransitionTime ge '2025-01-01T00:00:00Z'", ["adhoc-c", "nightly-b"]),
        ("stateTransitionTime eq 2024-01-01T00:00:00Z", ["adhoc-b", "nightly-a"]),
        ("creationTime lt datetime'2024-03-01T00:00:00Z'", ["adhoc-b", "nightly-a", "nightly-b"]),
        (
            "creationTime ge datetime'2024-06-01T00:00:00Z' and creationTime le datetime'2024-06-01T00:00:00Z'",
            [
                "adhoc-a",
                "nightly-c",
            ],
        ),
        (
            "(state eq 'completed' or state eq 'disabled') and startswith(id, 'adhoc')",
            ["adhoc-a", "adhoc-b"],
        ),
        ("startswith(executionInfo/poolId, 'gpu')", ["adhoc-c"]),
        ("executionInfo/endTime lt datetime'2024-02-01T00:00:00Z'", ["nightly-a"]),
    ],
)
def test_list_jobs_filter_through_the_sdk(
    fleet: BatchEmulator, client: Any, expression: str, expected: list[str]
) -> None:
    assert job_ids(client, expression) == expected
    # The same answer page by page.
    assert job_ids(client, expression, max_results=1) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "displayName eq 'x'",  # not a filterable job property
        "state eq 'running'",  # not a job state
        "state gt 'active'",  # state takes eq / ne only
        "startswith(state, 'act')",  # startswith takes string properties only
        "creationTime gt 'yesterday'",
        "priority eq 0",
        "id eq 'a' or",
    ],
)
def test_list_jobs_refuses_bad_filters(fleet: BatchEmulator, client: Any, raw: RawApi, expression: str) -> None:
    response = raw.call("GET", "/jobs", params={"$filter": expression})
    assert (response.status_code, error_code(response)) == (400, "InvalidQueryParameterValue")
    assert {"key": "QueryParameterName", "value": "$filter"} in response.json()["values"]
    assert failure(lambda: job_ids(client, expression)) == (400, "InvalidQueryParameterValue")


def test_list_jobs_filter_with_select(fleet: BatchEmulator, client: Any, raw: RawApi) -> None:
    jobs = list(client.list_jobs(filter="state eq 'completed'", select=["id", "stateTransitionTime"]))
    assert (jobs[0].id, jobs[0].state, jobs[0].pool_info) == ("adhoc-a", None, None)
    assert jobs[0].state_transition_time == MID
    body = raw.call("GET", "/jobs", params={"$filter": "startswith(id,'nightly')", "$select": "id,state"}).json()
    assert [set(job) for job in body["value"]] == [{"id", "state"}] * 3
    assert "odata.nextLink" not in body


# ---- job state history --------------------------------------------------------------------------


def test_state_transition_times_follow_every_job_state_change(emu: BatchEmulator, client: Any) -> None:
    client.create_job(models.BatchJobCreateOptions(id="job1", pool_info=models.BatchPoolInfo(pool_id="p")))
    created = client.get_job("job1")
    # The initial active state has no previous state.
    assert created.previous_state is None and created.previous_state_transition_time is None
    assert created.state_transition_time == created.creation_time

    emu.set_job_transition_delay(terminate=0.5, delete=30)
    client.begin_terminate_job("job1", terminate_options("fleet stop"), polling_interval=0.05)
    terminating = client.get_job("job1")
    assert (terminating.state, terminating.previous_state) == ("terminating", "active")
    assert terminating.previous_state_transition_time == created.state_transition_time
    assert terminating.state_transition_time > created.state_transition_time

    time.sleep(0.55)  # the terminate delay set above
    completed = client.get_job("job1")
    assert (completed.state, completed.previous_state) == ("completed", "terminating")
    assert completed.previous_state_transition_time == terminating.state_transition_time
    assert completed.state_transition_time > terminating.state_transition_time
    assert completed.execution_info.end_time == completed.state_transition_time
    # A filter on the transition time sees the new time.
    since = iso(terminating.state_transition_time + timedelta(microseconds=1))
    assert job_ids(client, f"state eq 'completed' and stateTransitionTime ge datetime'{since}'") == ["job1"]

    client.begin_delete_job("job1", polling_interval=0.05)
    deleting = client.get_job("job1")
    assert (deleting.state, deleting.previous_state) == ("deleting", "completed")
    assert deleting.previous_state_transition_time == completed.state_transition_time
    assert job_ids(client, "state eq 'deleting'") == ["job1"]


def test_every_state_change_gets_a_new_etag(emu: BatchEmulator, raw: RawApi) -> None:
    emu.set_job_transition_delay(terminate=30, delete=30)
    emu.seed_job("job1")
    first = raw.call("GET", "/jobs/job1").headers["ETag"]
    raw.call("POST", "/jobs/job1/terminate")
    second = raw.call("GET", "/jobs/job1").headers["ETag"]
    raw.call("DELETE", "/jobs/job1")
    third = raw.call("GET", "/jobs/job1").json()
    assert len({first, second, third["eTag"]}) == 3
    assert (third["state"], third["previousState"]) == ("deleting", "terminating")


# ---- seeding helpers ----------------------------------------------------------------------------


def test_seeded_jobs_have_a_consistent_state_history(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("fresh")
    fresh = client.get_job("fresh")
    assert fresh.previous_state is None and fresh.state_transition_time == fresh.creation_time
    emu.seed_job("done", state="completed", state_transition_time=MID)
    done = client.get_job("done")
    # A past transition also dates the creation; the job came from the state before completed.
    assert (done.creation_time, done.state_transition_time) == (MID, MID)
    assert (done.previous_state, done.previous_state_transition_time) == ("terminating", MID)
    assert done.execution_info.end_time == MID
    emu.seed_job(
        "explicit",
        state="disabled",
        creation_time=OLD,
        state_transition_time=NEW,
        previous_state="active",
        previous_state_transition_time=MID,
    )
    explicit = client.get_job("explicit")
    assert (explicit.creation_time, explicit.previous_state_transition_time, explicit.state_transition_time) == (
        OLD,
        MID,
        NEW,
    )
    assert (explicit.state, explicit.previous_state) == ("disabled", "active")
    emu.seed_job("dated", state="disabled", creation_time=OLD, previous_state_transition_time=MID)
    dated = client.get_job("dated")
    assert (dated.previous_state, dated.previous_state_transition_time) == ("disabling", MID)


def test_set_job_state(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1", state_transition_time=OLD)
    moved = emu.set_job_state("job1", "disabled", state_transition_time=MID)
    assert (moved["state"], moved["stateTransitionTime"]) == ("disabled", iso(MID))
    assert (moved["previousState"], moved["previousStateTransitionTime"]) == ("active", iso(OLD))
    emu.set_job_state("job1", "completed")
    job = client.get_job("job1")
    assert (job.state, job.previous_state, job.previous_state_transition_time) == ("completed", "disabled", MID)
    assert job.execution_info.end_time == job.state_transition_time
    with pytest.raises(ValueError, match="already completed"):
        emu.set_job_state("job1", "completed")
    with pytest.raises(ValueError, match="state"):
        emu.set_job_state("job1", "asleep")
    # A job moved to deleting stays there, like a seeded one.
    emu.set_job_state("job1", "deleting")
    assert client.get_job("job1").state == "deleting"


def test_seed_jobs_in_bulk_with_tasks(emu: BatchEmulator, raw: RawApi) -> None:
    count = emu.seed_jobs(
        {"id": f"job{j}", "state": "completed" if j % 2 else "active", "tasks": [{"id": f"t{i}"} for i in range(j)]}
        for j in range(5)
    )
    assert count == 5
    assert [job["id"] for job in raw.call("GET", "/jobs").json()["value"]] == [f"job{j}" for j in range(5)]
    assert [len(raw.call("GET", f"/jobs/job{j}/tasks").json()["value"]) for j in range(5)] == [0, 1, 2, 3, 4]
    # Re-seeding replaces the job and keeps its tasks.
    emu.seed_jobs([{"id": "JOB3", "state": "active"}])
    assert stored_job(emu, "job3")["state"] == "active"
    assert emu.get_task("job3", "t2") is not None


def test_seed_jobs_is_all_or_nothing(emu: BatchEmulator) -> None:
    with pytest.raises(ValueError, match="state"):
        emu.seed_jobs([{"id": "good"}, {"id": "bad", "state": "sleeping"}])
    with pytest.raises(ValueError, match="id"):
        emu.seed_jobs([{"id": "good"}, {"id": "bad", "tasks": [{"id": "no spaces"}]}])
    with pytest.raises(ValueError, match="timestamp"):
        emu.seed_jobs([{"id": "good", "state_transition_time": 12}])
    assert emu.get_job("good") is None


def test_admin_bulk_seed_state_change_and_task_counts(emu: BatchEmulator, raw: RawApi) -> None:
    jobs = [
        {
            "id": f"job{j}",
            "state": "completed",
            "stateTransitionTime": f"2024-01-0{j + 1}T00:00:00Z",
            "poolId": "p1",
            "tasks": [
                {"id": "ok", "state": "completed", "exitCode": 0},
                {"id": "bad", "state": "completed", "exitCode": 9},
            ],
        }
        for j in range(3)
    ]
    response = admin(emu, "POST", "jobs", {"value": jobs})
    assert (response.status_code, response.json()) == (201, {"count": 3})
    listed = raw.call("GET", "/jobs", params={"$filter": "stateTransitionTime lt '2024-01-03T00:00:00Z'"}).json()
    assert [job["id"] for job in listed["value"]] == ["job0", "job1"]
    counts = admin(emu, "GET", "jobs/job2/taskcounts").json()
    assert counts["taskCounts"] == {"active": 0, "running": 0, "completed": 2, "succeeded": 1, "failed": 1}

    single = admin(
        emu,
        "POST",
        "jobs",
        {
            "id": "solo",
            "state": "disabled",
            "previousState": "active",
            "previousStateTransitionTime": "2023-12-01T00:00:00Z",
            "tasks": [{"id": "t1"}],
        },
    )
    assert single.status_code == 201
    assert (single.json()["previousState"], single.json()["previousStateTransitionTime"]) == (
        "active",
        "2023-12-01T00:00:00.000000Z",
    )
    assert emu.get_task("solo", "t1") is not None

    moved = admin(emu, "POST", "jobs/solo/state", {"state": "active", "stateTransitionTime": "2024-02-01T00:00:00Z"})
    assert moved.status_code == 200
    assert (moved.json()["state"], moved.json()["previousState"]) == ("active", "disabled")
    assert moved.json()["stateTransitionTime"] == "2024-02-01T00:00:00.000000Z"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "jobs", {"value": "nope"}, 400),
        ("POST", "jobs", {"value": [{"state": "active"}]}, 400),
        ("POST", "jobs", {"value": [{"id": "j", "tasks": "t1"}]}, 400),
        ("POST", "jobs", {"value": [{"id": "j", "tasks": [{"id": "t", "colour": "red"}]}]}, 400),
        ("POST", "jobs", {"value": [{"id": "j", "stateTransitionTime": "not a time"}]}, 400),
        ("POST", "jobs", {"value": [{"id": "j", "previousState": "sleeping"}]}, 409),
        ("POST", "jobs/nojob/state", {"state": "active"}, 404),
        ("POST", "jobs/job1/state", {}, 400),
        ("POST", "jobs/job1/state", {"state": "active"}, 409),
        ("POST", "jobs/job1/state", {"state": "completed", "stateTransitionTime": 5}, 400),
        ("POST", "jobs/job1/state", {"state": "completed", "when": "now"}, 400),
        ("GET", "jobs/nojob/taskcounts", None, 404),
    ],
)
def test_admin_fleet_refusals(
    emu: BatchEmulator, method: str, path: str, body: dict[str, Any] | None, status: int
) -> None:
    emu.seed_job("job1")
    assert admin(emu, method, path, body).status_code == status
    assert emu.get_job("j") is None
