"""List Tasks / List Jobs: $filter, $select, maxresults and paging via odata.nextLink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import RawApi, error_code

OLD = datetime(2024, 1, 1, tzinfo=UTC)
NEW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.fixture
def mixed_job(emu: BatchEmulator) -> BatchEmulator:
    """job1 with tasks in every state, two transition times and several exit codes."""
    emu.seed_job("job1")
    emu.seed_tasks(
        "job1",
        [
            {"id": "a-active", "state": "active", "creation_time": OLD},
            {"id": "a-running", "state": "running", "state_transition_time": NEW},
            {"id": "b-ok-old", "state": "completed", "exit_code": 0, "state_transition_time": OLD},
            {"id": "b-ok-new", "state": "completed", "exit_code": 0, "state_transition_time": NEW},
            {"id": "c-fail-old", "state": "completed", "exit_code": 2, "state_transition_time": OLD},
            {"id": "c-fail-new", "state": "completed", "exit_code": 7, "state_transition_time": NEW},
        ],
    )
    return emu


def ids(client: Any, **kwargs: Any) -> list[str]:
    return [task.id for task in client.list_tasks("job1", **kwargs)]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("state eq 'completed'", ["b-ok-new", "b-ok-old", "c-fail-new", "c-fail-old"]),
        ("state ne 'completed'", ["a-active", "a-running"]),
        ("id eq 'B-OK-OLD'", ["b-ok-old"]),
        ("id ne 'a-active' and id lt 'b'", ["a-running"]),
        ("id ge 'c'", ["c-fail-new", "c-fail-old"]),
        ("id gt 'c-fail-new' or id le 'a-active'", ["a-active", "c-fail-old"]),
        ("startswith(id, 'b-')", ["b-ok-new", "b-ok-old"]),
        ("startswith(id,'b-') eq true", ["b-ok-new", "b-ok-old"]),
        ("startswith(id,'b-') eq false and startswith(id,'c-') eq false", ["a-active", "a-running"]),
        ("executionInfo/result eq 'failure'", ["c-fail-new", "c-fail-old"]),
        ("executionInfo/result ne 'failure'", ["a-active", "a-running", "b-ok-new", "b-ok-old"]),
        ("executionInfo/exitCode gt 0", ["c-fail-new", "c-fail-old"]),
        ("executionInfo/exitCode eq 7", ["c-fail-new"]),
        ("executionInfo/exitCode ge 0 and executionInfo/exitCode lt 3", ["b-ok-new", "b-ok-old", "c-fail-old"]),
        (
            "state eq 'completed' and stateTransitionTime lt datetime'2024-06-01T00:00:00Z'",
            ["b-ok-old", "c-fail-old"],
        ),
        ("stateTransitionTime ge 2025-01-01T00:00:00Z and state eq 'completed'", ["b-ok-new", "c-fail-new"]),
        ("creationTime le '2024-01-01T00:00:00Z'", ["a-active"]),
        (
            "(state eq 'running' or executionInfo/result eq 'success') and stateTransitionTime gt "
            "datetime'2024-06-01T00:00:00Z'",
            ["a-running", "b-ok-new"],
        ),
        ("state eq 'active' or (startswith(id,'c') and executionInfo/exitCode eq 2)", ["a-active", "c-fail-old"]),
    ],
)
def test_filters(mixed_job: BatchEmulator, client: Any, expression: str, expected: list[str]) -> None:
    assert ids(client, filter=expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "state eq 'deleted'",
        "nosuch eq 1",
        "state gt 'active'",
        "executionInfo/exitCode eq 'x'",
        "(state eq 'active'",
        "state eq 'active' and",
        "startswith(state, 'a')",
        "id eq 'a' extra",
        "startswith(id,'a') eq 'yes'",
    ],
)
def test_invalid_filters_are_refused(mixed_job: BatchEmulator, raw: RawApi, expression: str) -> None:
    response = raw.call("GET", "/jobs/job1/tasks", params={"$filter": expression})
    assert (response.status_code, error_code(response)) == (400, "InvalidQueryParameterValue")
    assert {"key": "QueryParameterName", "value": "$filter"} in response.json()["values"]


def test_select(mixed_job: BatchEmulator, client: Any, raw: RawApi) -> None:
    tasks = list(client.list_tasks("job1", select=["id", "state"], filter="id eq 'a-active'"))
    assert (tasks[0].id, tasks[0].state, tasks[0].execution_info) == ("a-active", "active", None)
    single = raw.call("GET", "/jobs/job1/tasks/b-ok-old", params={"$select": "id,executionInfo"}).json()
    assert set(single) == {"odata.metadata", "id", "executionInfo"}
    job = raw.call("GET", "/jobs/job1", params={"$select": "id,state"}).json()
    assert set(job) == {"odata.metadata", "id", "state"}


def test_paging_across_pages_with_the_sdk(emu: BatchEmulator, client: Any) -> None:
    emu.seed_job("job1")
    emu.seed_tasks("job1", ({"id": f"t{i:03}"} for i in range(35)))
    pages = list(client.list_tasks("job1", max_results=10).by_page())
    sizes = [len(list(page)) for page in pages]
    assert sizes == [10, 10, 10, 5]
    everything = [task.id for task in client.list_tasks("job1", max_results=10)]
    assert everything == [f"t{i:03}" for i in range(35)]


def test_next_link_is_absolute_and_keeps_the_query(mixed_job: BatchEmulator, raw: RawApi) -> None:
    params = {"maxresults": "1", "$filter": "state eq 'completed'", "$select": "id"}
    seen: list[str] = []
    response = raw.call("GET", "/jobs/job1/tasks", params=params).json()
    while True:
        seen += [task["id"] for task in response["value"]]
        link = response.get("odata.nextLink")
        if link is None:
            break
        parts = urlsplit(link)
        assert link.startswith(mixed_job.url + "/jobs/job1/tasks?")
        query = parse_qs(parts.query)
        assert query["$filter"] == ["state eq 'completed'"] and "$skiptoken" in query
        response = raw.session.get(link, timeout=10).json()
    assert seen == ["b-ok-new", "b-ok-old", "c-fail-new", "c-fail-old"]


def test_maxresults_bounds(mixed_job: BatchEmulator, raw: RawApi) -> None:
    for value, code in (("0", "OutOfRangeQueryParameterValue"), ("1001", "OutOfRangeQueryParameterValue")):
        response = raw.call("GET", "/jobs/job1/tasks", params={"maxresults": value})
        assert (response.status_code, error_code(response)) == (400, code)
    response = raw.call("GET", "/jobs", params={"maxresults": "ten"})
    assert (response.status_code, error_code(response)) == (400, "InvalidQueryParameterValue")
    assert raw.call("GET", "/jobs/job1/tasks", params={"maxresults": "1000"}).status_code == 200
    bad_token = raw.call("GET", "/jobs/job1/tasks", params={"$skiptoken": "%%%"})
    assert bad_token.status_code == 400


def test_list_jobs_filter_and_paging(emu: BatchEmulator, client: Any) -> None:
    for index in range(7):
        emu.seed_job(f"job{index}", state="completed" if index % 2 else "active", state_transition_time=OLD)
    active = [job.id for job in client.list_jobs(filter="state eq 'active'", max_results=2)]
    assert active == ["job0", "job2", "job4", "job6"]
    pages = list(client.list_jobs(max_results=3).by_page())
    assert [len(list(page)) for page in pages] == [3, 3, 1]
    old_done = client.list_jobs(filter="state eq 'completed' and stateTransitionTime lt '2024-02-01T00:00:00Z'")
    assert [job.id for job in old_done] == ["job1", "job3", "job5"]
    by_pool = client.list_jobs(filter="executionInfo/poolId eq 'emulator-pool' and startswith(id, 'job6')")
    assert [job.id for job in by_pool] == ["job6"]


def test_bulk_seed_and_the_retention_query(emu: BatchEmulator, raw: RawApi) -> None:
    """The retention shape: many jobs, old completed tasks listed with state + stateTransitionTime.

    (How fast: bench/emulator_capacity.py and make bench measure it; the suite asserts no timings.)"""
    cutoff = datetime.now(UTC) - timedelta(days=7)
    for job_index in range(20):
        emu.seed_job(f"job{job_index}")
        emu.seed_tasks(
            f"job{job_index}",
            (
                {
                    "id": f"t{i:04}",
                    "state": "completed" if i % 2 else "running",
                    "exit_code": 0,
                    "state_transition_time": cutoff - timedelta(days=1 if i % 4 == 1 else -1),
                }
                for i in range(1000)
            ),
        )
    when = (cutoff).strftime("%Y-%m-%dT%H:%M:%SZ")
    expression = f"state eq 'completed' and stateTransitionTime lt datetime'{when}'"
    response = raw.call("GET", "/jobs/job7/tasks", params={"$filter": expression, "$select": "id"}).json()
    assert sorted(item["id"] for item in response["value"]) == [f"t{i:04}" for i in range(1, 1000, 4)]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    task_ids=st.sets(st.from_regex(r"[a-z0-9_-]{1,12}", fullmatch=True), max_size=40),
    page_size=st.integers(min_value=1, max_value=15),
    completed_every=st.integers(min_value=1, max_value=4),
)
def test_paging_yields_each_match_once_in_id_order(
    emulator_server: BatchEmulator, raw: RawApi, task_ids: set[str], page_size: int, completed_every: int
) -> None:
    emulator_server.reset()
    emulator_server.seed_job("job1")
    ordered = sorted(task_ids)
    specs = [
        {"id": task_id, "state": "completed" if index % completed_every == 0 else "active"}
        for index, task_id in enumerate(ordered)
    ]
    emulator_server.seed_tasks("job1", specs)
    params = {"maxresults": str(page_size), "$filter": "state eq 'completed'"}
    response = raw.call("GET", "/jobs/job1/tasks", params=params).json()
    seen = [task["id"] for task in response["value"]]
    while "odata.nextLink" in response:
        assert len(response["value"]) <= page_size
        response = raw.session.get(response["odata.nextLink"], timeout=10).json()
        seen += [task["id"] for task in response["value"]]
    assert seen == [spec["id"] for spec in specs if spec["state"] == "completed"]


@pytest.mark.parametrize("keyword", ["datetime", "DateTime", "DATETIME"])
def test_datetime_literal_keyword_is_case_insensitive(emu: BatchEmulator, raw: RawApi, keyword: str) -> None:
    emu.seed_job("job1")
    emu.seed_task("job1", "old", state="completed", exit_code=0, state_transition_time=datetime(2024, 1, 1, tzinfo=UTC))
    emu.seed_task("job1", "new", state="completed", exit_code=0)
    expression = f"stateTransitionTime lt {keyword}'2025-01-01T00:00:00Z'"
    response = raw.call("GET", "/jobs/job1/tasks", params={"$filter": expression, "$select": "id"}).json()
    assert [item["id"] for item in response["value"]] == ["old"]
