"""The retention planner and run driver against an in-memory lister (no HTTP): filters, ids, bound, dry-run."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.batch_client import BatchAnswer, BatchError, BatchListError
from shared.config import Settings, load_settings
from shared.contract import COMMAND_ID_PATTERN, parse_command, stable_id
from shared.retention import (
    ENQUEUE_CHUNK,
    RetentionCounts,
    cutoff_time,
    job_filter,
    plan_deletions,
    run_retention,
    task_filter,
)
from tests.retention.memory_queue import MemoryQueue
from tests.support import product_env

NOW = datetime(2026, 11, 24, 4, 30, 15, 987654, tzinfo=UTC)
OLD = "2026-10-01T00:00:00.1234567Z"  # Batch sends seven fractional digits
RECENT = "2026-11-23T00:00:00Z"


def settings(**overrides: str) -> Settings:
    return load_settings(product_env("http://127.0.0.1:8091", **overrides))


def task(task_id: str, state: str = "completed", when: str = OLD, result: str | None = "success") -> dict[str, Any]:
    info = {"result": result} if result else {}
    return {"id": task_id, "state": state, "stateTransitionTime": when, "executionInfo": info}


class ListingStandIn:
    """Answers listings from dicts and ignores $filter, as a careless server might; records each call."""

    def __init__(self, jobs: Mapping[str, list[dict[str, Any]]], failing: frozenset[str] = frozenset()) -> None:
        self.jobs = jobs
        self.failing = failing
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def list_values(self, account: str, path: str, params: Mapping[str, str]) -> Iterator[Mapping[str, Any]]:
        self.calls.append((account, path, dict(params)))
        if path == "/jobs":
            yield from ({"id": job_id, "state": "active"} for job_id in self.jobs)
            return
        job_id = path.split("/")[2]
        if job_id in self.failing:
            raise BatchListError(path, BatchAnswer(404, BatchError("JobNotFound", "The specified job does not exist.")))
        yield from self.jobs[job_id]


def test_task_filter_is_the_documented_odata_with_a_whole_second_cutoff() -> None:
    retention = settings().retention
    cutoff = cutoff_time(NOW, 7)
    assert cutoff == datetime(2026, 11, 17, 4, 30, 15, tzinfo=UTC)
    assert task_filter(retention, cutoff) == (
        "state eq 'completed' and stateTransitionTime lt datetime'2026-11-17T04:30:15Z'"
    )
    success = settings(RETENTION_TASK_RESULT="success").retention
    assert task_filter(success, cutoff) == (
        "state eq 'completed' and stateTransitionTime lt datetime'2026-11-17T04:30:15Z'"
        " and executionInfo/result eq 'success'"
    )


def test_job_filter_combines_prefix_and_state_and_quotes_the_prefix() -> None:
    assert job_filter(settings().retention) is None
    assert job_filter(settings(RETENTION_JOB_PREFIX="nightly-").retention) == "startswith(id,'nightly-')"
    assert job_filter(settings(RETENTION_JOB_STATE="completed").retention) == "state eq 'completed'"
    both = settings(RETENTION_JOB_PREFIX="it's", RETENTION_JOB_STATE="active").retention
    assert job_filter(both) == "startswith(id,'it''s') and state eq 'active'"


def test_stable_ids_are_readable_when_short_hashed_when_long_and_always_the_same() -> None:
    assert stable_id("retention", "local", "job-1", "task-1") == "retention:local:job-1:task-1"
    long_id = stable_id("retention", "local", "j" * 64, "t" * 64)
    assert long_id == stable_id("retention", "local", "j" * 64, "t" * 64)
    assert long_id.startswith("retention:") and len(long_id) <= 100
    assert COMMAND_ID_PATTERN.fullmatch(long_id)
    assert long_id != stable_id("retention", "local", "j" * 64, "t" * 63 + "u")
    # Not printable ASCII (e.g. an alert id with a space) is hashed too, so the contract accepts it.
    assert " " not in stable_id("alert", "an id with spaces", "job")


def test_plan_lists_with_server_side_filter_and_select_then_rechecks_each_task() -> None:
    jobs = {
        "job-a": [
            task("old-ok"),
            task("old-failed", result="failure"),
            task("recent", when=RECENT),
            task("running", state="running"),
            task("no-time", when="yesterday"),
        ],
        "job-b": [task("old-ok")],
    }
    lister = ListingStandIn(jobs)
    counts = RetentionCounts()
    retention = settings().retention
    messages = list(plan_deletions(lister, retention, NOW, "2025-06-01", counts))

    assert [json.loads(m.body)["taskId"] for m in messages] == ["old-ok", "old-failed", "old-ok"]
    assert (counts.jobs_scanned, counts.tasks_seen, counts.listing_errors) == (2, 6, 0)
    account, path, params = lister.calls[1]
    assert (account, path) == ("local", "/jobs/job-a/tasks")
    assert params == {
        "api-version": "2025-06-01",
        "$filter": "state eq 'completed' and stateTransitionTime lt datetime'2026-11-17T04:30:15Z'",
        "$select": "id,state,stateTransitionTime",
        "maxresults": "1000",
    }
    assert lister.calls[0][2] == {"api-version": "2025-06-01", "$select": "id,state", "maxresults": "1000"}


def test_only_succeeded_tasks_qualify_when_configured() -> None:
    lister = ListingStandIn({"job-a": [task("ok"), task("bad", result="failure"), task("none", result=None)]})
    retention = settings(RETENTION_TASK_RESULT="success").retention
    messages = list(plan_deletions(lister, retention, NOW, "2025-06-01", RetentionCounts()))
    assert [json.loads(m.body)["taskId"] for m in messages] == ["ok"]
    assert lister.calls[1][2]["$select"] == "id,state,stateTransitionTime,executionInfo"


def test_each_message_is_a_contract_valid_delete_command_keyed_by_account_job_task() -> None:
    lister = ListingStandIn({"job-a": [task("t1")]})
    (message,) = plan_deletions(lister, settings().retention, NOW, "2025-06-01", RetentionCounts())
    command = parse_command(message.body, message.message_id, ["local"], "local")
    assert (command.action, command.job_id, command.task_id, command.account) == ("deleteTask", "job-a", "t1", "local")
    assert command.command_id == message.message_id == message.correlation_id == "retention:local:job-a:t1"
    assert command.requested_by == "retention_cleanup"
    assert message.subject == "deleteTask"


def test_a_failing_job_listing_is_counted_and_the_other_jobs_still_run(caplog: pytest.LogCaptureFixture) -> None:
    lister = ListingStandIn({"gone": [task("t1")], "job-b": [task("t2")]}, failing=frozenset({"gone"}))
    counts = RetentionCounts()
    with caplog.at_level(logging.WARNING, "batch_lifecycle"):
        messages = list(plan_deletions(lister, settings().retention, NOW, "2025-06-01", counts))
    assert [json.loads(m.body)["jobId"] for m in messages] == ["job-b"]
    assert counts.listing_errors == 1
    (record,) = [json.loads(r.getMessage()) for r in caplog.records if "retentionListingFailed" in r.getMessage()]
    assert record["jobId"] == "gone" and "JobNotFound" in record["error"]


def many_jobs(jobs: int, tasks: int) -> dict[str, list[dict[str, Any]]]:
    return {f"job-{j}": [task(f"t-{t}") for t in range(tasks)] for j in range(jobs)}


def test_run_sends_chunks_and_stops_listing_at_the_bound(caplog: pytest.LogCaptureFixture) -> None:
    lister = ListingStandIn(many_jobs(jobs=10, tasks=300))
    bus = MemoryQueue()
    config = settings(RETENTION_MAX_COMMANDS="1100")
    with caplog.at_level(logging.INFO, "batch_lifecycle"):
        summary = run_retention(lister, bus, config, NOW)

    assert len(bus.queued) == bus.offered == 1100
    assert bus.enqueue_calls == -(-1100 // ENQUEUE_CHUNK)
    assert summary.limit_reached and summary.commands_enqueued == 1100
    # The bound stops the listing: job-4 (tasks 1200-1499) is never asked for.
    assert [path for _, path, _ in lister.calls][-1] == "/jobs/job-3/tasks"
    assert summary.tasks_seen == 1100 and summary.skipped == 0
    (line,) = [r.getMessage() for r in caplog.records if "retentionSummary" in r.getMessage()]
    assert json.loads(line) == summary.event()


def test_a_run_below_the_bound_does_not_report_it_reached() -> None:
    summary = run_retention(ListingStandIn(many_jobs(2, 5)), MemoryQueue(), settings(RETENTION_MAX_COMMANDS="11"), NOW)
    assert summary.commands_enqueued == 10 and not summary.limit_reached


def test_skipped_counts_listed_tasks_that_fail_the_recheck() -> None:
    lister = ListingStandIn({"job": [task("ok"), task("recent", when=RECENT), task("running", state="running")]})
    summary = run_retention(lister, MemoryQueue(), settings(), NOW)
    assert (summary.tasks_seen, summary.commands_enqueued, summary.skipped) == (3, 1, 2)


def test_dry_run_enqueues_nothing_but_reports_and_publishes_the_summary() -> None:
    bus = MemoryQueue()
    summary = run_retention(ListingStandIn(many_jobs(3, 7)), bus, settings(RETENTION_DRY_RUN="true"), NOW)
    assert bus.offered == 0 and bus.enqueue_calls == 0
    assert (summary.commands_planned, summary.commands_enqueued, summary.dry_run) == (21, 0, True)
    (published,) = bus.published
    assert published.subject == "retentionSummary"
    assert published.application_properties["decision"] == "summary"
    event = json.loads(published.body)
    assert event["dryRun"] is True and event["commandsPlanned"] == 21 and event["jobsScanned"] == 3
    assert event["cutoff"] == "2026-11-17T04:30:15Z"


def test_each_selected_account_is_scanned() -> None:
    config = load_settings(
        product_env(
            "http://127.0.0.1:8091",
            BATCH_ACCOUNTS=json.dumps(
                {"a": "http://127.0.0.1:1", "b": "http://127.0.0.1:2", "c": "http://127.0.0.1:3"}
            ),
            BATCH_DEFAULT_ACCOUNT="a",
            RETENTION_ACCOUNTS="a,c",
        )
    )
    lister = ListingStandIn({"job": [task("t")]})
    bus = MemoryQueue()
    run_retention(lister, bus, config, NOW)
    assert sorted(bus.queued) == ["retention:a:job:t", "retention:c:job:t"]
    assert {account for account, _, _ in lister.calls} == {"a", "c"}


def test_zero_retention_days_means_everything_completed_before_now() -> None:
    config = settings(RETENTION_DAYS="0")
    lister = ListingStandIn({"job": [task("t", when=(NOW - timedelta(seconds=2)).isoformat())]})
    assert run_retention(lister, MemoryQueue(), config, NOW).commands_enqueued == 1
    later = replace(config, retention=replace(config.retention, days=1))
    assert run_retention(lister, MemoryQueue(), later, NOW).commands_enqueued == 0
