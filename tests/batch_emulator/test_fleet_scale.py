"""A fleet of 1 000 jobs of 100 tasks each: seeded in one call, listed with server-side filters and paging.

Asserts what comes back (ids, states, counts, paging), never how fast: bench/ measures speed.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from emulators.batch import BatchEmulator
from tests.batch_emulator.helpers import RawApi

JOBS = 1000
TASKS = 100
BASE = datetime(2024, 1, 1, tzinfo=UTC)
JOB_STATES = ("active", "completed", "completed", "disabled", "terminating")


def job_id(index: int) -> str:
    return f"fleet-{index:04}"


def job_seed(index: int) -> dict[str, Any]:
    """Job i: a state from a fixed cycle, entered i hours after BASE; its tasks cycle through five shapes."""
    tasks = [
        {"id": f"t{t:03}", "state": "active"}
        if t % 5 == 0
        else {"id": f"t{t:03}", "state": "running"}
        if t % 5 == 1
        else {"id": f"t{t:03}", "state": "completed", "exit_code": 1 if t % 5 == 2 else 0}
        for t in range(TASKS)
    ]
    return {
        "id": job_id(index),
        "state": JOB_STATES[index % len(JOB_STATES)],
        "state_transition_time": BASE + timedelta(hours=index),
        "tasks": tasks,
    }


def collect(raw: RawApi, path: str, params: dict[str, str]) -> tuple[list[dict[str, Any]], int]:
    """Every item of a list, following odata.nextLink; also how many pages it took."""
    body = raw.call("GET", path, params=params).json()
    items, pages = list(body["value"]), 1
    while "odata.nextLink" in body:
        body = raw.session.get(body["odata.nextLink"], timeout=30).json()
        items += body["value"]
        pages += 1
    return items, pages


def test_thousand_jobs_of_hundred_tasks(emu: BatchEmulator, raw: RawApi, client: Any) -> None:
    assert emu.seed_jobs(job_seed(index) for index in range(JOBS)) == JOBS

    # All jobs, one page of the 1 000 the service allows at most.
    everything, pages = collect(raw, "/jobs", {"maxresults": "1000", "$select": "id,state"})
    assert pages == 1 and [job["id"] for job in everything] == [job_id(i) for i in range(JOBS)]
    assert Counter(job["state"] for job in everything) == {
        "active": 200,
        "completed": 400,
        "disabled": 200,
        "terminating": 200,
    }

    # Server-side filter: completed jobs that entered that state in the first 500 hours, in pages of 150.
    cutoff = (BASE + timedelta(hours=500)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expression = f"state eq 'completed' and stateTransitionTime lt datetime'{cutoff}'"
    old_done, pages = collect(raw, "/jobs", {"$filter": expression, "maxresults": "150", "$select": "id"})
    expected = [job_id(i) for i in range(500) if JOB_STATES[i % len(JOB_STATES)] == "completed"]
    assert [job["id"] for job in old_done] == expected and len(expected) == 200
    assert pages == 2

    # The same selection through the SDK, with a prefix filter on top.
    sdk = [job.id for job in client.list_jobs(filter=f"startswith(id, 'fleet-01') and {expression}")]
    assert sdk == [job_id(i) for i in range(100, 200) if JOB_STATES[i % len(JOB_STATES)] == "completed"]

    # Every job's tasks, in pages of 1 000 (each job fits in one), and one server-filtered list per job.
    states: Counter[str] = Counter()
    for index in range(JOBS):
        tasks, pages = collect(raw, f"/jobs/{job_id(index)}/tasks", {"maxresults": "1000", "$select": "id,state"})
        assert pages == 1 and len(tasks) == TASKS
        assert tasks[0]["id"] == "t000" and tasks[-1]["id"] == f"t{TASKS - 1:03}"
        states.update(task["state"] for task in tasks)
    assert states == {"active": 20_000, "running": 20_000, "completed": 60_000}

    failed = 0
    for index in range(0, JOBS, 10):
        params = {"$filter": "executionInfo/result eq 'failure'", "$select": "id", "maxresults": "1000"}
        hits, _ = collect(raw, f"/jobs/{job_id(index)}/tasks", params)
        assert [task["id"] for task in hits] == [f"t{t:03}" for t in range(2, TASKS, 5)]
        failed += len(hits)
    assert failed == 100 * 20

    # Task counts agree with the lists.
    counts = client.get_job_task_counts(job_id(777))
    tc = counts.task_counts
    assert (tc.active, tc.running, tc.completed, tc.succeeded, tc.failed) == (20, 20, 60, 40, 20)

    # One job's tasks in small pages: each task once, in id order.
    small, pages = collect(raw, f"/jobs/{job_id(3)}/tasks", {"maxresults": "7", "$select": "id"})
    assert [task["id"] for task in small] == [f"t{t:03}" for t in range(TASKS)] and pages == 15
