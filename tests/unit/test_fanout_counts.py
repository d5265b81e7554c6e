"""Get Task Counts on a job page (shared/fanout.py): calls go out in waves side by side, in the page's order,
in the invocation's context, and counting stops within one wave once the budget is spent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Final

import pytest

from shared.batch_client import BatchAnswer
from shared.contract import Selection, parse_message
from shared.fanout import COUNTS_IN_FLIGHT, Expander
from shared.policy import Policy
from tests.unit.helpers import answer, make_settings

AS_OF: Final = datetime(2026, 11, 24, 4, 0, tzinfo=UTC)
CALLER: ContextVar[str] = ContextVar("caller", default="none")
FLEET: Final = make_settings(FLEET_SCOPE_PREFIXES="render-").fleet


class CountingBatch:
    """A job page of ``jobs`` and, per job, ``completed[job]`` completed tasks; records each counts call."""

    def __init__(self, completed: Mapping[str, int], barrier: threading.Barrier | None = None) -> None:
        self.completed = dict(completed)
        self.barrier = barrier
        self.counted: list[str] = []
        self.contexts: list[str] = []
        self.lock = threading.Lock()

    def list_page(
        self, account: str, path: str, params: Mapping[str, str], next_link: str | None = None, key: str | None = None
    ) -> BatchAnswer:
        return answer(200, body={"value": [{"id": job, "state": "active"} for job in self.completed]})

    def get_task_counts(self, account: str, job_id: str, key: str | None = None) -> BatchAnswer:
        if self.barrier is not None:
            self.barrier.wait()  # every call of a wave must be in flight at once, or this times out
        with self.lock:
            self.counted.append(job_id)
            self.contexts.append(CALLER.get())
        done = self.completed[job_id]
        counts = {"active": 0, "running": 0, "completed": done, "succeeded": done, "failed": 0}
        return answer(200, body={"taskCounts": counts})


def per_job_selection(limit: int) -> Selection:
    body = {
        "action": "deleteTask",
        "jobSelect": {"idPrefix": "render-"},
        "select": {"state": "completed"},
        "limit": limit,
        "commandId": "sel",
    }
    found = parse_message(json.dumps(body).encode(), "sel", ("prod",), "prod", FLEET)
    assert isinstance(found, Selection)
    return found


def expand(batch: CountingBatch, limit: int) -> dict[str, Any]:
    plan = Expander(FLEET, batch, Policy(), clock=lambda: AS_OF).plan(per_job_selection(limit))
    assert plan.continuation is not None
    return dict(json.loads(plan.continuation.body)["continuation"])


def test_each_job_gets_its_share_in_page_order() -> None:
    jobs = {f"render-{n:02d}": n for n in range(1, 21)}  # job n has n completed tasks
    batch = CountingBatch(jobs)
    page = expand(batch, limit=1000)
    assert page["pending"] == list(jobs)
    assert page["pendingLimits"] == list(jobs.values())
    assert sorted(batch.counted) == sorted(jobs)


def test_the_calls_of_a_wave_are_in_flight_together() -> None:
    jobs = {f"render-{n:02d}": 3 for n in range(COUNTS_IN_FLIGHT)}
    batch = CountingBatch(jobs, threading.Barrier(COUNTS_IN_FLIGHT, timeout=10))
    page = expand(batch, limit=1000)
    assert page["pendingLimits"] == [3] * COUNTS_IN_FLIGHT


def test_counting_stops_within_one_wave_once_the_budget_is_spent() -> None:
    jobs = {f"render-{n:02d}": 5 for n in range(40)}
    batch = CountingBatch(jobs)
    page = expand(batch, limit=12)
    assert (page["pending"], page["pendingLimits"]) == (["render-00", "render-01", "render-02"], [5, 5, 2])
    assert page["limitReached"] is True
    assert len(batch.counted) == COUNTS_IN_FLIGHT  # one wave, not 40 calls


@pytest.mark.parametrize("jobs", [1, COUNTS_IN_FLIGHT + 1])
def test_counts_run_in_the_invocations_context(jobs: int) -> None:
    batch = CountingBatch({f"render-{n:02d}": 1 for n in range(jobs)})
    token = CALLER.set("invocation")
    try:
        expand(batch, limit=1000)
    finally:
        CALLER.reset(token)
    assert batch.contexts == ["invocation"] * jobs
