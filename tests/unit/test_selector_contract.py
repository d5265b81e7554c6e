"""Selector commands in the command contract (shared/contract.py, schemas/command.schema.json): shapes, the scope
guard, limits, the internal continuation, deterministic ids and their lengths.

Every new input shape has a negative test here: unknown selector fields, an empty selector, a selector combined
with a target id, a limit out of range, and continuations nobody but the app should write.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Final

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schemas
from shared.config import FleetSettings
from shared.contract import (
    MAX_COMMAND_ID,
    MAX_PAGE,
    Command,
    Continuation,
    InvalidCommand,
    Selection,
    child_id,
    page_message_id,
    parse_command,
    parse_message,
)
from shared.outcome import Outcome
from shared.selectors import JobSelector, Scope, TaskSelector
from tests.unit.helpers import NOW, SchemaValidator

ACCOUNTS: Final = ("prod", "dev")
FLEET: Final = FleetSettings(Scope(prefixes=("render-", "train-")), default_limit=1000, max_limit=100_000)
EVERYTHING: Final = FleetSettings(Scope(everything=True), default_limit=1000, max_limit=100_000)
NOBODY: Final = FleetSettings(Scope(), default_limit=1000, max_limit=100_000)
VALIDATOR: Final = SchemaValidator(schemas.COMMAND)
TASK_ACTIONS: Final = ("terminateTask", "deleteTask", "reactivateTask")
JOB_ACTIONS: Final = ("terminateJob", "deleteJob")


def parse(data: dict[str, Any], fleet: FleetSettings | None = FLEET) -> Command | Selection:
    return parse_message(json.dumps(data).encode(), "msg-1", ACCOUNTS, "prod", fleet)


def selection(data: dict[str, Any], fleet: FleetSettings | None = FLEET) -> Selection:
    found = parse(data, fleet)
    assert isinstance(found, Selection), found
    return found


def problems(data: dict[str, Any], fleet: FleetSettings | None = FLEET) -> list[str]:
    with pytest.raises(InvalidCommand) as caught:
        parse(data, fleet)
    return caught.value.problems


def only_problem(data: dict[str, Any], pattern: str, fleet: FleetSettings | None = FLEET) -> None:
    found = problems(data, fleet)
    assert len(found) == 1, found
    assert re.search(pattern, found[0]), found[0]


def tasks(**fields: Any) -> dict[str, Any]:
    return {"action": "deleteTask", "jobId": "render-1", "select": {"state": "completed"}, **fields}


def jobs(**fields: Any) -> dict[str, Any]:
    return {"action": "terminateJob", "select": {"allTasksComplete": True, "olderThan": "PT1H"}, **fields}


def per_job(**fields: Any) -> dict[str, Any]:
    return {"action": "deleteTask", "jobSelect": {"idPrefix": "render-"}, "select": {"state": "completed"}, **fields}


# ---------------------------------------------------------------- the three kinds


def test_a_task_selector_on_one_job() -> None:
    found = selection(tasks(limit=50, requestedBy="ops"))
    assert (found.kind, found.job_id, found.limit, found.requested_by) == ("tasks", "render-1", 50, "ops")
    assert found.select == TaskSelector(state="completed") and found.job_select is None


def test_a_job_selector_for_a_job_action() -> None:
    found = selection(jobs(action="deleteJob", force=True))
    assert (found.kind, found.job_id, found.force) == ("jobs", None, True)
    assert isinstance(found.select, JobSelector) and found.select.all_tasks_complete


def test_job_select_then_a_task_selector_per_job() -> None:
    found = selection(per_job())
    assert (found.kind, found.job_id) == ("jobsThenTasks", None)
    assert found.job_select == JobSelector(id_prefix="render-")


def test_the_limit_defaults_to_the_setting() -> None:
    assert selection(tasks()).limit == 1000


def test_a_selector_round_trips_through_its_canonical_body() -> None:
    original = selection(per_job(limit=7, dryRun=True, commandId="sel-1", requestedBy="me"))
    again = parse_message(original.to_json(), None, ACCOUNTS, "prod", FLEET)
    assert again == original
    assert VALIDATOR.is_valid(json.loads(original.to_json()))


def test_without_selector_fields_a_body_is_a_single_target_command() -> None:
    found = parse({"action": "deleteJob", "jobId": "any-job"}, NOBODY)  # the scope guard is for selectors only
    assert isinstance(found, Command) and found.action == "deleteJob"


# ---------------------------------------------------------------- shapes that are refused


def test_a_selector_and_a_task_id_are_refused_together() -> None:
    only_problem(tasks(taskId="t1"), r"^taskId cannot be combined with select or jobSelect")


@pytest.mark.parametrize("action", JOB_ACTIONS)
def test_a_job_selector_and_a_job_id_are_refused_together(action: str) -> None:
    only_problem(jobs(action=action, jobId="render-1"), rf"^jobId cannot be combined with select: for {action}")


def test_job_select_and_a_job_id_are_refused_together() -> None:
    only_problem(per_job(jobId="render-1"), r"^jobId cannot be combined with jobSelect")


def test_job_select_needs_a_task_selector() -> None:
    data = per_job()
    del data["select"]
    only_problem(data, r"^deleteTask with jobSelect also needs select")


def test_a_task_selector_needs_a_job() -> None:
    data = tasks()
    del data["jobId"]
    only_problem(data, r"^a deleteTask selector needs jobId .* or jobSelect")


@pytest.mark.parametrize("action", JOB_ACTIONS)
def test_job_select_is_for_task_actions(action: str) -> None:
    only_problem(jobs(action=action, jobSelect={"idPrefix": ""}), r"^jobSelect applies to task actions")


@pytest.mark.parametrize("name", ["limit", "continuation"])
def test_limit_alone_makes_no_selector(name: str) -> None:
    value: object = 5 if name == "limit" else {}
    found = problems({"action": "terminateJob", name: value})
    assert any(p.startswith("a terminateJob selector command needs select") for p in found), found


@pytest.mark.parametrize("name", ["ifMatch", "ifUnmodifiedSince"])
def test_preconditions_do_not_apply_to_a_selector(name: str) -> None:
    value = "0x8D4125FD1A825A4" if name == "ifMatch" else "Sun, 06 Nov 1994 08:49:37 GMT"
    only_problem(tasks(**{name: value}), r"^ifMatch and ifUnmodifiedSince name one target's version")


def test_unknown_selector_fields_are_refused() -> None:
    only_problem(tasks(select={"state": "completed", "exitcode": 1}), r"^select has unknown fields \['exitcode'\]")


@pytest.mark.parametrize("builder", [tasks, jobs, per_job])
def test_an_empty_selector_is_refused(builder: Any) -> None:
    only_problem(builder(select={}), r"^select is empty")


def test_an_empty_job_select_is_refused() -> None:
    only_problem(per_job(jobSelect={}), r"^jobSelect is empty")


def test_a_task_action_gets_the_task_grammar_and_a_job_action_the_job_grammar() -> None:
    only_problem(tasks(select={"allTasksComplete": True}), r"^select has unknown fields \['allTasksComplete'\]")
    only_problem(jobs(select={"result": "success"}), r"^select has unknown fields \['result'\]")


@pytest.mark.parametrize("limit", [0, -1, 100_001, 10**30, 1.5, "10", True, None, [5]])
def test_a_limit_outside_1_to_the_hard_cap_is_refused(limit: object) -> None:
    only_problem(tasks(limit=limit), r"^limit must be a whole number from 1 to 100000 \(FLEET_MAX_LIMIT\)")


@pytest.mark.parametrize("limit", [1, 100_000])
def test_the_limit_may_reach_the_hard_cap(limit: int) -> None:
    assert selection(tasks(limit=limit)).limit == limit


def test_every_broken_rule_is_named_at_once() -> None:
    found = problems(
        {
            "action": "deleteTask",
            "jobId": "train-1",
            "taskId": "t1",
            "jobSelect": {"idPrefix": "other-", "colour": 1},
            "select": {},
            "limit": 0,
            "ifMatch": "x",
            "force": True,
        }
    )
    for pattern in (
        r"^force applies to terminateJob and deleteJob only",
        r"^ifMatch and ifUnmodifiedSince",
        r"^taskId cannot be combined",
        r"^jobId cannot be combined with jobSelect",
        r"^jobSelect has unknown fields \['colour'\]",
        r"^select is empty",
        r"^limit must be a whole number",
    ):
        assert any(re.search(pattern, p) for p in found), (pattern, found)


# ---------------------------------------------------------------- the scope guard


@pytest.mark.parametrize("builder", [tasks, jobs, per_job])
def test_an_empty_scope_refuses_every_selector_and_names_the_setting(builder: Any) -> None:
    only_problem(builder(), r"^selectors are disabled: FLEET_SCOPE_PREFIXES is empty, so no job is in scope", NOBODY)


def test_without_fleet_settings_selectors_are_refused() -> None:
    only_problem(tasks(), r"FLEET_SCOPE_PREFIXES is empty", None)
    with pytest.raises(InvalidCommand):
        parse_command(json.dumps(tasks()).encode(), "m", ACCOUNTS, "prod")


def test_a_task_selector_on_a_job_outside_the_scope_is_refused() -> None:
    only_problem(
        tasks(jobId="other-1"),
        r"^jobId 'other-1' is outside FLEET_SCOPE_PREFIXES \('render-', 'train-'\); selectors act only on jobs",
    )


@pytest.mark.parametrize(("builder", "path"), [(jobs, "select"), (per_job, "jobSelect")])
def test_a_job_prefix_that_can_never_be_in_scope_is_refused(builder: Any, path: str) -> None:
    data = builder()
    data[path] = {"idPrefix": "other-"}
    only_problem(data, rf"^{path}.idPrefix 'other-' is outside FLEET_SCOPE_PREFIXES")


def test_star_puts_every_job_in_scope() -> None:
    assert selection(tasks(jobId="anything"), EVERYTHING).job_id == "anything"


# ---------------------------------------------------------------- the continuation


def continuation(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "page": 2,
        "next": "https://prod.westeurope.batch.azure.com/jobs/render-1/tasks?$skiptoken=abc",
        "asOf": "2026-11-24T04:00:00Z",
        "remaining": 10,
        "listed": 500,
        "matched": 40,
        "selected": 40,
        "enqueued": 0,
    }
    base.update(fields)
    return base


def test_a_continuation_is_read_back_exactly() -> None:
    found = selection(tasks(commandId="sel", continuation=continuation(pending=["t1", "t2"], limitReached=True)))
    assert found.continuation == Continuation(
        page=2,
        next_link="https://prod.westeurope.batch.azure.com/jobs/render-1/tasks?$skiptoken=abc",
        as_of=datetime(2026, 11, 24, 4, 0, tzinfo=UTC),
        remaining=10,
        listed=500,
        matched=40,
        selected=40,
        pending=("t1", "t2"),
        limit_reached=True,
    )
    assert found.message_id() == "sel#p2"
    assert VALIDATOR.is_valid(json.loads(found.to_json()))


def test_the_next_page_keeps_every_field_and_replaces_only_the_continuation() -> None:
    first = selection(jobs(action="terminateJob", commandId="sel", reason="cleanup", dryRun=True, requestedBy="ops"))
    later = selection(tasks(commandId="sel", continuation=continuation(pending=["t1"]))).continuation
    assert later is not None
    assert first.with_continuation(later) == first._replace(continuation=later)
    assert first.with_continuation(later).continuation is later


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        ({"page": 1}, r"continuation.page must be a whole number from 2"),
        ({"page": MAX_PAGE + 1}, r"continuation.page"),
        ({"remaining": 100_001}, r"continuation.remaining"),
        ({"next": "ftp://x/y"}, r"continuation.next must be null or a URL"),
        ({"asOf": "yesterday"}, r"continuation.asOf"),
        ({"pending": ["bad id"]}, r"continuation.pending must be a list"),
        ({"pending": ["t"] * 501}, r"continuation.pending must be a list of at most 500"),
        ({"pendingLimits": [1]}, r"continuation.pendingLimits belongs to jobSelect"),
        ({"firstTargets": ["a/b/c"]}, r"continuation.firstTargets"),
        ({"limitReached": "yes"}, r"continuation.limitReached"),
        ({"cursor": 1}, r"continuation.has unknown fields \['cursor'\]"),
    ],
)
def test_a_malformed_continuation_is_refused(change: dict[str, Any], pattern: str) -> None:
    only_problem(tasks(continuation=continuation(**change)), pattern)


def test_a_continuation_cannot_smuggle_in_jobs_outside_the_scope() -> None:
    data = jobs(continuation=continuation(next=None, pending=["render-1", "other-1"]))
    only_problem(data, r"continuation.pending names jobs outside FLEET_SCOPE_PREFIXES: \['other-1'\]")


def test_job_select_pending_jobs_need_their_limits() -> None:
    only_problem(per_job(continuation=continuation(pending=["render-1"])), r"continuation.pendingLimits must give")
    found = selection(per_job(continuation=continuation(pending=["render-1"], pendingLimits=[30])))
    assert found.continuation is not None and found.continuation.pending_limits == (30,)


def test_a_dry_run_carries_no_pending_targets() -> None:
    only_problem(tasks(dryRun=True, continuation=continuation(pending=["t1"])), r"a dry run enqueues nothing")


# ---------------------------------------------------------------- ids


def test_per_target_ids_are_readable_when_they_fit() -> None:
    assert child_id("sel-1", "render-1", "t1") == "sel-1/render-1/t1"
    assert child_id("sel-1", "render-1") == "sel-1/render-1"


def test_per_target_ids_are_a_stable_digest_when_they_do_not_fit() -> None:
    parent = "p" * 100
    first = child_id(parent, "j" * 64, "t" * 64)
    assert first == child_id(parent, "j" * 64, "t" * 64)
    assert len(first) == MAX_COMMAND_ID and first.startswith("p" * 34 + "/~")
    assert first != child_id(parent, "j" * 64, "t" * 63 + "u")
    assert child_id("p" * 60, "j" * 30) != child_id("p" * 60, "j" * 30, "t")


LONGEST: Final = "c" * MAX_COMMAND_ID


def test_every_id_a_selector_makes_fits_service_bus_s_128_characters() -> None:
    """The proof for every id the fan-out derives, at the longest commandId, page and attempt."""
    ids = [
        child_id(LONGEST, "j" * 64, "t" * 64),
        child_id(LONGEST, "j" * 64),
        page_message_id(LONGEST, True, MAX_PAGE),
        page_message_id(LONGEST, True, MAX_PAGE, 100),
        page_message_id(LONGEST, False, MAX_PAGE, 100),
    ]
    for decision in ("expanding", "retry", "succeeded", "deadLetter"):
        for dry_run in (True, False):
            outcome = Outcome(
                command_id=LONGEST,
                action="deleteTask",
                account="prod",
                job_id=None,
                task_id=None,
                decision=decision,
                attempt=100,
                occurred_at=NOW,
                dry_run=dry_run,
                page=MAX_PAGE,
            )
            ids.append(outcome.message_id)
    assert max(len(message_id) for message_id in ids) <= 128, max(ids, key=len)
    assert len(child_id(LONGEST, "j" * 64, "t" * 64)) <= MAX_COMMAND_ID  # a child's own suffixes fit as well


def test_page_ids_keep_dry_runs_and_attempts_apart() -> None:
    assert page_message_id("sel", False, 2) == "sel#p2"
    assert page_message_id("sel", True, 2) == "sel#dryRun#p2"
    assert page_message_id("sel", False, 1, 3) == "sel#p1#3"


# ---------------------------------------------------------------- the schema agrees with the code

ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
prefixes = st.from_regex(r"[A-Za-z0-9_-]{0,10}", fullmatch=True)
durations = st.sampled_from(["PT1H", "P7D", "P1W", "P2DT3H", "PT30M", "PT5S", "P0D"])
task_states = st.sampled_from(["active", "preparing", "running", "completed"])
job_states = st.sampled_from(["active", "disabled", "terminating", "completed", "deleting"])


@st.composite
def task_selectors(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "state": task_states,
        "result": st.sampled_from(["success", "failure"]),
        "exitCodes": st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=20),
        "idPrefix": prefixes,
        "olderThan": durations,
    }
    chosen = draw(st.sets(st.sampled_from(sorted(fields)), min_size=1))
    selector = {name: draw(fields[name]) for name in chosen}
    if "state" in selector and ("result" in selector or "exitCodes" in selector):
        selector["state"] = "completed"  # result and exit codes describe completed tasks
    return selector


@st.composite
def job_selectors(draw: st.DrawFn) -> dict[str, Any]:
    fields: dict[str, st.SearchStrategy[Any]] = {
        "idPrefix": st.sampled_from(["", "render-", "train-2", "r"]),
        "state": job_states,
        "olderThan": durations,
        "allTasksComplete": st.just(True),
        "noTasks": st.just(True),
    }
    chosen = draw(st.sets(st.sampled_from(sorted(fields)), min_size=1))
    if {"allTasksComplete", "noTasks"} <= chosen:
        chosen.discard(draw(st.sampled_from(["allTasksComplete", "noTasks"])))
    return {name: draw(fields[name]) for name in chosen}


@st.composite
def selector_commands(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["tasks", "jobs", "jobsThenTasks"]))
    if kind == "jobs":
        action = draw(st.sampled_from(JOB_ACTIONS))
        data: dict[str, Any] = {"action": action, "select": draw(job_selectors())}
        if action == "terminateJob" and draw(st.booleans()):
            data["reason"] = draw(st.text(min_size=1, max_size=64))
        if draw(st.booleans()):
            data["force"] = draw(st.booleans())
    else:
        data = {"action": draw(st.sampled_from(TASK_ACTIONS)), "select": draw(task_selectors())}
        if kind == "tasks":
            data["jobId"] = "render-" + draw(ids)[:50]
        else:
            data["jobSelect"] = draw(job_selectors())
    for name, strategy in {
        "limit": st.integers(1, 100_000),
        "dryRun": st.booleans(),
        "commandId": st.from_regex(r"[\x21-\x7e]{1,100}", fullmatch=True),
        "account": st.sampled_from(ACCOUNTS),
    }.items():
        if draw(st.booleans()):
            data[name] = draw(strategy)
    return data


EDITS: Final = ("drop", "taskId", "jobId", "jobSelect", "empty", "unknown", "limit", "wrong type", "precondition")


@st.composite
def near_selector_commands(draw: st.DrawFn) -> dict[str, Any]:
    data = draw(selector_commands())
    edit = draw(st.sampled_from(EDITS))
    if edit == "drop":
        data.pop(draw(st.sampled_from(sorted(data))))
    elif edit in ("taskId", "jobId"):
        data[edit] = "render-" + draw(ids)[:50]
    elif edit == "jobSelect":
        data["jobSelect"] = draw(job_selectors())
    elif edit == "empty":
        data[draw(st.sampled_from(["select", "jobSelect"]))] = {}
    elif edit == "unknown":
        target = data.get("select")
        assert isinstance(target, dict)
        target[draw(st.sampled_from(["exitcode", "State", "allTasksComplete", "result", "noTasks"]))] = True
    elif edit == "limit":
        data["limit"] = draw(st.sampled_from([0, -1, 1, 100_000, 1.0, "5", True]))
    elif edit == "wrong type":
        data[draw(st.sampled_from(["select", "jobSelect", "limit", "continuation"]))] = draw(
            st.sampled_from([None, [], "x", 3])
        )
    else:
        data["ifMatch"] = "0x8D4125FD1A825A4"
    return data


def _code_accepts(data: dict[str, Any]) -> bool:
    try:
        parse(data, FleetSettings(Scope(prefixes=("render-", "train-", "r")), 1000, 100_000))
    except InvalidCommand:
        return False
    return True


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(selector_commands(), near_selector_commands()))
def test_the_schema_and_the_code_agree_on_selector_commands(data: dict[str, Any]) -> None:
    schema_errors = VALIDATOR.errors(data)
    assert (not schema_errors) == _code_accepts(data), (schema_errors, data)


@settings(max_examples=200, deadline=None)
@given(selector_commands())
def test_any_valid_selector_round_trips(data: dict[str, Any]) -> None:
    found = selection(data)
    assert parse_message(found.to_json(), None, ACCOUNTS, "prod", FLEET) == found
    assert VALIDATOR.is_valid(json.loads(found.to_json()))
