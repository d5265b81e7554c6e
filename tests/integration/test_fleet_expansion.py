"""Expanding selectors over many pages against the Batch emulator (docs/design.md, "Fleet operations"): every
target acted on once, one terminal outcome, the limit and the hard cap, dry runs, failures mid-expansion, and
the deleteJob action itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

import pytest

import schemas
from emulators.batch import BatchEmulator
from shared.messages import Outbound
from tests.integration.fleet import OLD, Fleet
from tests.unit.helpers import SchemaValidator

pytestmark = pytest.mark.usefixtures("identity_env")
OUTCOME: Final = SchemaValidator(schemas.OUTCOME)


def seed_completed(batch: BatchEmulator, job_id: str, count: int, first: int = 0) -> list[str]:
    ids = [f"t{n:05d}" for n in range(first, first + count)]
    if batch.get_job(job_id) is None:
        batch.seed_job(job_id)
    batch.seed_tasks(job_id, ({"id": t, "state": "completed", "state_transition_time": OLD} for t in ids))
    return ids


def selector(job_id: str = "fleet-big", **extra: Any) -> dict[str, Any]:
    return {"action": "deleteTask", "jobId": job_id, "select": {"state": "completed"}, "commandId": "sel", **extra}


def assert_events_valid(fleet: Fleet) -> None:
    for event in fleet.queue.events():
        assert OUTCOME.is_valid(event), (OUTCOME.errors(event), event)


def assert_each_target_once(fleet: Fleet, expected: set[tuple[str, str | None]]) -> None:
    acted = fleet.acted()
    assert len(acted) == len(set(acted)), "a target got two commands"
    assert set(acted) == expected
    deliveries = fleet.deliveries_of_targets()
    assert set(deliveries.values()) <= {1}, "a target command was processed twice"
    assert len(deliveries) == len(expected)


# ---------------------------------------------------------------- many pages


def test_a_selector_over_ten_thousand_tasks_acts_on_each_once_with_one_terminal_outcome(fleet: Fleet) -> None:
    tasks = seed_completed(fleet.batch, "fleet-big", 10_000)
    seed_completed(fleet.batch, "fleet-other", 50)
    before = fleet.batch.request_count
    fleet.run(selector(limit=100_000))

    assert_each_target_once(fleet, {("fleet-big", t) for t in tasks})
    assert fleet.tasks_left("fleet-big", tasks) == set()
    assert len(fleet.tasks_left("fleet-other", [f"t{n:05d}" for n in range(50)])) == 50
    events = fleet.outcomes("sel")
    assert [e["decision"] for e in events] == ["expanding"] * 20 + ["succeeded"]
    assert [e["fanOut"]["page"] for e in events] == list(range(1, 22))
    final = fleet.final("sel")
    totals = {k: final["fanOut"][k] for k in ("totalListed", "totalSelected", "totalEnqueued", "limitReached")}
    assert totals == {"totalListed": 10_000, "totalSelected": 10_000, "totalEnqueued": 10_000, "limitReached": False}
    # 20 List Tasks pages of 500 and one call per target: no invocation walked more than one page.
    assert fleet.batch.request_count - before == 20 + 10_000
    assert len({m.message_id for m in fleet.queue.topic.values() if json.loads(m.body)["commandId"] == "sel"}) == 21
    assert_events_valid(fleet)


def test_a_continuation_carries_one_page_of_targets_within_the_body_limit(fleet: Fleet) -> None:
    fleet.batch.seed_job("fleet-" + "j" * 58)
    long_ids = [f"{n:04d}" + "t" * 60 for n in range(600)]
    fleet.batch.seed_tasks("fleet-" + "j" * 58, ({"id": t, "state": "completed"} for t in long_ids))
    fleet.run(selector("fleet-" + "j" * 58, commandId="c" * 100))
    pages = [m for m in fleet.queue.history if m.message_id.startswith("c" * 100 + "#p")]
    assert pages and max(len(m.body) for m in pages) < 64 * 1024
    assert len(fleet.acted()) == 600
    assert all(len(m.message_id) <= 128 for m in fleet.queue.history)


# ---------------------------------------------------------------- limits


def test_the_limit_holds_for_a_task_selector(fleet: Fleet) -> None:
    tasks = seed_completed(fleet.batch, "fleet-big", 3000)
    fleet.run(selector(limit=1234))
    assert len(fleet.acted()) == 1234 and len(fleet.tasks_left("fleet-big", tasks)) == 3000 - 1234
    final = fleet.final("sel")
    assert (final["fanOut"]["limitReached"], final["fanOut"]["remaining"], final["fanOut"]["limit"]) == (True, 0, 1234)
    assert "stopped at the limit of 1234" in final["detail"]


def test_the_limit_holds_for_a_job_selector(fleet: Fleet) -> None:
    fleet.batch.seed_jobs({"id": f"fleet-{n:03d}"} for n in range(700))
    fleet.run({"action": "deleteJob", "select": {"idPrefix": ""}, "limit": 555, "commandId": "jobs"})
    assert len(fleet.acted("deleteJob")) == 555
    assert sum(1 for n in range(700) if fleet.job_state(f"fleet-{n:03d}") is None) == 555
    assert fleet.final("jobs")["fanOut"]["limitReached"] is True


def test_the_limit_holds_across_per_job_selectors_by_splitting_the_budget(fleet: Fleet) -> None:
    for n in range(5):
        seed_completed(fleet.batch, f"fleet-{n}", 400)
    fleet.run({"action": "deleteTask", "jobSelect": {"idPrefix": ""}, "select": {"state": "completed"}, "limit": 1000,
               "commandId": "split"})  # fmt: skip
    assert len(fleet.acted()) == 1000
    limits = {body["jobId"]: body["limit"] for body in fleet.queue.selector_bodies() if body.get("jobId")}
    assert limits == {"fleet-0": 400, "fleet-1": 400, "fleet-2": 200}
    assert fleet.final("split")["fanOut"]["limitReached"] is True


def test_the_default_limit_applies_when_none_is_given(fleet_factory: Callable[..., Fleet]) -> None:
    fleet = fleet_factory(FLEET_DEFAULT_LIMIT="50")
    seed_completed(fleet.batch, "fleet-big", 120)
    fleet.run(selector())
    assert len(fleet.acted()) == 50 and fleet.final("sel")["fanOut"]["limit"] == 50


@pytest.mark.parametrize("limit", [11, 0, 10**9])
def test_a_limit_above_the_hard_cap_is_refused_with_no_batch_call(
    fleet_factory: Callable[..., Fleet], limit: int
) -> None:
    fleet = fleet_factory(FLEET_MAX_LIMIT="10", FLEET_DEFAULT_LIMIT="10", RETENTION_MAX_COMMANDS="10")
    seed_completed(fleet.batch, "fleet-big", 20)
    before = fleet.batch.request_count
    fleet.run(selector(limit=limit))
    final = fleet.final("sel")
    assert final["deadLetterReason"] == "InvalidCommand"
    assert "limit must be a whole number from 1 to 10 (FLEET_MAX_LIMIT)" in final["detail"]
    assert fleet.batch.request_count == before and fleet.acted() == []


# ---------------------------------------------------------------- dry runs


@pytest.mark.parametrize(
    ("body", "selected", "first"),
    [
        (selector(dryRun=True, limit=5000), 1200, ["fleet-big/t00000", "fleet-big/t00009"]),
        ({"action": "deleteJob", "select": {"idPrefix": ""}, "dryRun": True, "commandId": "sel"}, 2, ["fleet-big"]),
        (
            {"action": "deleteTask", "jobSelect": {"idPrefix": ""}, "select": {"state": "completed"}, "dryRun": True,
             "limit": 5000, "commandId": "sel"},
            2,
            ["fleet-big", "fleet-small"],
        ),
    ],
    ids=["tasks", "jobs", "jobsThenTasks"],
)  # fmt: skip
def test_a_dry_run_walks_the_pages_changes_nothing_and_reports_counts_and_first_targets(
    fleet: Fleet, body: dict[str, Any], selected: int, first: list[str]
) -> None:
    tasks = seed_completed(fleet.batch, "fleet-big", 1200)
    seed_completed(fleet.batch, "fleet-small", 3)
    fleet.run(body)

    assert fleet.acted() == [] and fleet.queue.selector_bodies()[1:] == [
        b for b in fleet.queue.selector_bodies()[1:] if "continuation" in b
    ]
    assert fleet.tasks_left("fleet-big", tasks) == set(tasks)
    assert fleet.job_state("fleet-big") == "active"
    final = fleet.final("sel")
    assert (final["decision"], final["dryRun"], final["fanOut"]["totalSelected"]) == ("succeeded", True, selected)
    assert final["fanOut"]["firstTargets"][: len(first) - 1] == first[:-1]
    assert first[-1] in final["fanOut"]["firstTargets"]
    assert final["detail"].startswith("dry run:")
    assert all(m.message_id.startswith("sel#dryRun") for m in fleet.queue.topic.values())
    assert_events_valid(fleet)


# ---------------------------------------------------------------- failures in the middle


def fail_once(kind: str, message_id: str) -> Callable[[str, Outbound], bool]:
    failed: list[str] = []

    def decide(sent_kind: str, message: Outbound) -> bool:
        if sent_kind == kind and message.message_id == message_id and not failed:
            failed.append(message_id)
            return True
        return False

    return decide


@pytest.mark.parametrize(
    ("kind", "message_id"),
    [
        ("publish", "sel#p3"),  # everything sent, the outcome lost: the page is redelivered
        ("enqueue", "sel#p4"),  # the targets sent, the continuation lost
        ("enqueue", "sel/fleet-big/t00500"),  # the first targets of a page lost
        ("publish", "sel"),  # the terminal outcome lost
    ],
)
@pytest.mark.parametrize("later", [False, True], ids=["redelivered-at-once", "redelivered-after-the-rest"])
def test_a_failure_mid_expansion_neither_doubles_nor_misses_a_target(
    fleet: Fleet, kind: str, message_id: str, later: bool
) -> None:
    tasks = seed_completed(fleet.batch, "fleet-big", 3000)
    fleet.queue.fail_when = fail_once(kind, message_id)
    fleet.queue.redeliver_last = later
    fleet.run(selector(limit=100_000))

    assert_each_target_once(fleet, {("fleet-big", t) for t in tasks})
    assert fleet.tasks_left("fleet-big", tasks) == set()
    assert len(fleet.queue.terminal("sel")) == 1
    assert max(fleet.queue.deliveries[m] for m in fleet.queue.deliveries if m.startswith("sel#p")) <= 2


def test_a_page_redelivered_after_its_targets_ran_cannot_pass_the_limit(fleet: Fleet) -> None:
    """The redelivered page lists a changed account (its targets are gone); its own continuation is dropped."""
    tasks = seed_completed(fleet.batch, "fleet-big", 3000)
    fleet.queue.fail_when = fail_once("publish", "sel#p2")
    fleet.queue.redeliver_last = True
    fleet.run(selector(limit=1700))
    assert len(fleet.acted()) == 1700 and len(fleet.tasks_left("fleet-big", tasks)) == 1300
    assert fleet.queue.deliveries["sel#p2"] == 2


def test_a_failed_listing_is_retried_from_the_same_page(fleet: Fleet) -> None:
    tasks = seed_completed(fleet.batch, "fleet-big", 1200)
    fleet.queue.send(selector(limit=5000))
    fleet.queue.drain(fleet.processor, limit=1)  # page 1
    fleet.batch.inject_fault("listTasks", status=503, code="ServerBusy", count=1)
    fleet.drain()
    retry = [e for e in fleet.outcomes("sel") if e["decision"] == "retry"]
    assert [(e["fanOut"]["page"], e["httpStatus"]) for e in retry] == [(2, 503)]
    assert "sel#p2#1" in fleet.queue.topic and "sel#p2#2" in fleet.queue.accepted
    assert_each_target_once(fleet, {("fleet-big", t) for t in tasks})
    assert_events_valid(fleet)


def test_a_listing_that_keeps_failing_ends_in_retries_exhausted(fleet: Fleet) -> None:
    seed_completed(fleet.batch, "fleet-big", 10)
    fleet.batch.inject_fault("listTasks", status=500, code="InternalError", count=100)
    fleet.run(selector())
    final = fleet.final("sel")
    assert (final["decision"], final["deadLetterReason"], final["attempt"]) == ("deadLetter", "RetriesExhausted", 4)
    assert [reason for _, reason in fleet.queue.dead_letters] == ["RetriesExhausted"]


def test_a_failing_task_count_retries_the_page(fleet: Fleet) -> None:
    for n in range(3):
        seed_completed(fleet.batch, f"fleet-{n}", 5)
    fleet.batch.inject_fault("getJobTaskCounts", status=429, code="TooManyRequests", count=1)
    fleet.run({"action": "deleteTask", "jobSelect": {"idPrefix": ""}, "select": {"idPrefix": ""}, "commandId": "sel"})
    assert [e["decision"] for e in fleet.outcomes("sel")] == ["retry", "expanding", "succeeded"]
    assert len(fleet.acted()) == 15


def test_a_task_selector_on_a_job_that_is_gone_selects_nothing(fleet: Fleet) -> None:
    fleet.run(selector("fleet-gone"))
    final = fleet.final("sel")
    assert (final["decision"], final["httpStatus"], final["batchError"]["code"]) == ("alreadyDone", 404, "JobNotFound")


def test_a_forged_next_link_to_another_listing_is_refused(fleet: Fleet) -> None:
    seed_completed(fleet.batch, "fleet-big", 5)
    seed_completed(fleet.batch, "fleet-other", 5)
    body = selector(
        continuation={
            "page": 2,
            "next": f"{fleet.batch.url}/jobs/fleet-other/tasks?api-version=2025-06-01",
            "asOf": "2026-11-24T00:00:00Z",
            "remaining": 10,
            "listed": 0,
            "matched": 0,
            "selected": 0,
            "enqueued": 0,
        }
    )
    fleet.run(body)
    final = fleet.final("sel")
    assert (final["decision"], final["deadLetterReason"]) == ("deadLetter", "UntrustedLink")
    assert fleet.acted() == []


# ---------------------------------------------------------------- deleteJob itself


@pytest.mark.parametrize(
    ("state", "decision", "status", "code"),
    [
        ("active", "succeeded", 202, None),
        ("completed", "succeeded", 202, None),
        ("disabled", "succeeded", 202, None),
        ("deleting", "alreadyDone", 409, "JobBeingDeleted"),
        (None, "alreadyDone", 404, "JobNotFound"),
    ],
)
def test_delete_job_from_each_state(fleet: Fleet, state: str | None, decision: str, status: int, code: str) -> None:
    if state is not None:
        fleet.batch.seed_job("fleet-j", state=state)
        fleet.batch.seed_task("fleet-j", "t1", state="running")
    fleet.run({"action": "deleteJob", "jobId": "fleet-j", "force": True, "commandId": "dj"})
    final = fleet.final("dj")
    assert (final["decision"], final["httpStatus"]) == (decision, status)
    assert (final["batchError"] or {}).get("code") == code
    if decision == "succeeded":
        assert fleet.job_state("fleet-j") is None


def test_delete_job_while_terminating_is_retried_when_the_service_says_so(fleet: Fleet) -> None:
    fleet.batch.seed_job("fleet-j")
    fleet.batch.inject_fault("deleteJob", status=409, code="JobBeingTerminated", count=1)
    fleet.run({"action": "deleteJob", "jobId": "fleet-j", "commandId": "dj"})
    assert [e["decision"] for e in fleet.outcomes("dj")] == ["retry", "succeeded"]
    assert fleet.job_state("fleet-j") is None


@pytest.mark.parametrize(
    ("state", "decision", "code"),
    [
        ("active", "succeeded", None),
        ("terminating", "succeeded", None),
        ("completed", "succeeded", None),
        ("deleting", "alreadyDone", "JobBeingDeleted"),
        (None, "alreadyDone", "JobNotFound"),
    ],
)
def test_a_delete_job_dry_run_predicts_from_the_job_state_and_changes_nothing(
    fleet: Fleet, state: str | None, decision: str, code: str | None
) -> None:
    if state is not None:
        fleet.batch.seed_job("fleet-j", state=state)
    fleet.run({"action": "deleteJob", "jobId": "fleet-j", "dryRun": True, "commandId": "dj"})
    (event,) = fleet.outcomes("dj")
    assert (event["decision"], event["dryRun"]) == (decision, True)
    assert (event["batchError"] or {}).get("code") == (code if code == "JobNotFound" else None)
    assert fleet.job_state("fleet-j") == state
