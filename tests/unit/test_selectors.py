"""The selector grammar (shared/selectors.py): parsing, the server-side filter, the check on our side, the scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import pytest

from shared.selectors import (
    JobSelector,
    OlderThan,
    Scope,
    TaskSelector,
    parse_duration,
    parse_job_selector,
    parse_task_selector,
)

AS_OF: Final = datetime(2026, 11, 24, 4, 0, 0, tzinfo=UTC)
SCOPE: Final = Scope(prefixes=("render-",))


def task_selector(value: object) -> tuple[TaskSelector | None, list[str]]:
    problems: list[str] = []
    return parse_task_selector(value, "select", problems), problems


def job_selector(value: object) -> tuple[JobSelector | None, list[str]]:
    problems: list[str] = []
    return parse_job_selector(value, "jobSelect", problems), problems


def task(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "t1", "state": "completed", "stateTransitionTime": "2026-11-01T00:00:00Z"}
    base.update(fields)
    return base


# ---------------------------------------------------------------- olderThan


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("PT1H", timedelta(hours=1)),
        ("P7D", timedelta(days=7)),
        ("P1W", timedelta(weeks=1)),
        ("P2DT12H", timedelta(days=2, hours=12)),
        ("PT90M", timedelta(minutes=90)),
        ("PT0.5S", timedelta(seconds=0.5)),
        ("P0D", timedelta(0)),
        ("P3650D", timedelta(days=3650)),
    ],
)
def test_iso_durations_in_fixed_units_are_read(text: str, delta: timedelta) -> None:
    assert parse_duration(text) == delta


@pytest.mark.parametrize(
    "text", ["", "P", "PT", "P1DT", "1H", "PT1H ", "P1Y", "P1M", "P1W2D", "-PT1H", "pt1h", "P3651D", "PT1,5H", "P1.5D"]
)
def test_other_durations_are_refused(text: str) -> None:
    assert parse_duration(text) is None


def test_the_cutoff_is_whole_seconds_before_as_of() -> None:
    older = OlderThan("PT1H", timedelta(hours=1))
    assert older.cutoff(AS_OF.replace(microsecond=999_999)) == datetime(2026, 11, 24, 3, 0, 0, tzinfo=UTC)


# ---------------------------------------------------------------- parsing task selectors


def test_every_task_field_is_read() -> None:
    selector, problems = task_selector(
        {"state": "completed", "result": "failure", "exitCodes": [1, 3, 1], "idPrefix": "frame-", "olderThan": "PT2H"}
    )
    assert problems == []
    assert selector == TaskSelector("completed", "failure", (1, 3), "frame-", OlderThan("PT2H", timedelta(hours=2)))
    assert selector.to_json() == {
        "state": "completed",
        "result": "failure",
        "exitCodes": [1, 3],
        "idPrefix": "frame-",
        "olderThan": "PT2H",
    }


def test_an_empty_selector_is_refused_and_says_how_to_select_everything() -> None:
    selector, problems = task_selector({})
    assert selector is None
    assert problems == [
        'select is empty; a selector must say what it selects (use {"idPrefix": ""} to select everything)'
    ]


def test_an_explicit_empty_prefix_selects_everything() -> None:
    selector, problems = task_selector({"idPrefix": ""})
    assert problems == [] and selector == TaskSelector(id_prefix="")
    assert selector.odata_filter(AS_OF) is None
    assert selector.matches(task(), AS_OF) and selector.matches(task(state="running"), AS_OF)


def test_unknown_task_fields_are_refused_by_name() -> None:
    _, problems = task_selector({"state": "completed", "exitcode": 1, "colour": "red"})
    assert problems == [
        "select has unknown fields ['colour', 'exitcode']; allowed fields are "
        "['state', 'result', 'exitCodes', 'idPrefix', 'olderThan']"
    ]


@pytest.mark.parametrize("value", [None, [], "state=completed", 3, True])
def test_a_selector_must_be_an_object(value: object) -> None:
    selector, problems = task_selector(value)
    assert selector is None
    assert problems == [
        "select must be a JSON object of selector fields ['state', 'result', 'exitCodes', 'idPrefix', 'olderThan']"
    ]


def test_every_broken_task_rule_is_named_at_once() -> None:
    _, problems = task_selector(
        {"state": "done", "result": "ok", "exitCodes": [], "idPrefix": "a b", "olderThan": "1 hour", "x": 1}
    )
    assert len(problems) == 6, problems
    for needle in (
        "unknown fields ['x']",
        "select.state 'done' is invalid",
        "select.result 'ok' is invalid",
        "select.exitCodes must be a list of 1-20 whole numbers",
        "select.idPrefix 'a b' is invalid",
        "select.olderThan '1 hour' is invalid",
    ):
        assert any(needle in problem for problem in problems), (needle, problems)


@pytest.mark.parametrize(
    "codes", [[], [True], [1.5], ["1"], [2**31], [-(2**31) - 1], list(range(21)), "1", None, {"a": 1}]
)
def test_exit_codes_are_1_to_20_whole_32_bit_numbers(codes: object) -> None:
    selector, problems = task_selector({"exitCodes": codes})
    assert selector is None and len(problems) == 1 and "select.exitCodes" in problems[0]


@pytest.mark.parametrize("codes", [[0], [-1], [2**31 - 1, -(2**31)], list(range(20))])
def test_good_exit_codes_are_accepted(codes: list[int]) -> None:
    selector, problems = task_selector({"exitCodes": codes})
    assert problems == [] and selector is not None and selector.exit_codes == tuple(codes)


@pytest.mark.parametrize("name", ["result", "exitCodes"])
@pytest.mark.parametrize("state", ["active", "preparing", "running"])
def test_result_and_exit_codes_describe_completed_tasks_only(name: str, state: str) -> None:
    value: object = "failure" if name == "result" else [1]
    _, problems = task_selector({"state": state, name: value})
    assert problems == [f"select.{name} applies to completed tasks only; it cannot match tasks in state '{state}'"]


@pytest.mark.parametrize("prefix", ["x" * 65, "a/b", "é", " ", 5, None])
def test_an_id_prefix_is_up_to_64_id_characters(prefix: object) -> None:
    _, problems = task_selector({"idPrefix": prefix})
    assert len(problems) == 1 and problems[0].startswith("select.idPrefix")


# ---------------------------------------------------------------- parsing job selectors


def test_every_job_field_is_read() -> None:
    selector, problems = job_selector(
        {"idPrefix": "render-", "state": "active", "olderThan": "PT1H", "allTasksComplete": True}
    )
    assert problems == []
    assert selector == JobSelector("render-", "active", OlderThan("PT1H", timedelta(hours=1)), True, False)
    assert selector.needs_counts


@pytest.mark.parametrize("state", ["disabling", "enabling", "Active", "running"])
def test_job_states_are_the_five_a_selector_can_name(state: str) -> None:
    _, problems = job_selector({"state": state})
    assert problems == [
        f"jobSelect.state '{state}' is invalid: use one of "
        "['active', 'disabled', 'terminating', 'completed', 'deleting']"
    ]


@pytest.mark.parametrize("name", ["allTasksComplete", "noTasks"])
@pytest.mark.parametrize("value", [False, "true", 1, None])
def test_the_task_count_conditions_take_only_true(name: str, value: object) -> None:
    _, problems = job_selector({name: value})
    assert len(problems) == 1 and problems[0].startswith(f"jobSelect.{name} must be true when given")


def test_all_tasks_complete_and_no_tasks_contradict() -> None:
    _, problems = job_selector({"allTasksComplete": True, "noTasks": True})
    assert problems == ["jobSelect: allTasksComplete and noTasks contradict each other (a job cannot match both)"]


def test_job_selectors_refuse_task_fields() -> None:
    _, problems = job_selector({"result": "success"})
    assert problems[0].startswith("jobSelect has unknown fields ['result']")


# ---------------------------------------------------------------- filters and the check on our side


def test_a_task_filter_names_every_field_batch_can_filter_on() -> None:
    selector = TaskSelector("completed", "failure", (1, 3), "fr'ame", OlderThan("PT1H", timedelta(hours=1)))
    assert selector.odata_filter(AS_OF) == (
        "startswith(id,'fr''ame') and state eq 'completed' and executionInfo/result eq 'failure' and "
        "(executionInfo/exitCode eq 1 or executionInfo/exitCode eq 3) and "
        "stateTransitionTime lt datetime'2026-11-24T03:00:00Z'"
    )


def test_a_job_filter_includes_the_scope() -> None:
    selector = JobSelector("render-2026", "completed", OlderThan("P1D", timedelta(days=1)), no_tasks=True)
    two = Scope(prefixes=("render-", "train-"))
    assert selector.odata_filter(two, AS_OF) == (
        "(startswith(id,'render-') or startswith(id,'train-')) and startswith(id,'render-2026') and "
        "state eq 'completed' and stateTransitionTime lt datetime'2026-11-23T04:00:00Z'"
    )
    assert JobSelector(id_prefix="").odata_filter(Scope(everything=True), AS_OF) is None


@pytest.mark.parametrize(
    ("selector", "item", "expected"),
    [
        (TaskSelector(state="completed"), task(), True),
        (TaskSelector(state="completed"), task(state="running"), False),
        (TaskSelector(result="failure"), task(executionInfo={"result": "failure"}), True),
        (TaskSelector(result="failure"), task(executionInfo={"result": "success"}), False),
        (TaskSelector(result="failure"), task(state="running", executionInfo={"result": "failure"}), False),
        (TaskSelector(exit_codes=(3,)), task(executionInfo={"exitCode": 3}), True),
        (TaskSelector(exit_codes=(3,)), task(executionInfo={"exitCode": 4}), False),
        (TaskSelector(exit_codes=(1,)), task(executionInfo={"exitCode": True}), False),
        (TaskSelector(exit_codes=(3,)), task(), False),
        (TaskSelector(id_prefix="t"), task(), True),
        (TaskSelector(id_prefix="T"), task(), False),
        (TaskSelector(older_than=OlderThan("P7D", timedelta(days=7))), task(), True),
        (TaskSelector(older_than=OlderThan("P30D", timedelta(days=30))), task(), False),
        (TaskSelector(older_than=OlderThan("P1D", timedelta(days=1))), task(stateTransitionTime="garbage"), False),
        (TaskSelector(older_than=OlderThan("P1D", timedelta(days=1))), task(stateTransitionTime=None), False),
    ],
)
def test_every_task_field_is_checked_again_on_our_side(
    selector: TaskSelector, item: dict[str, Any], expected: bool
) -> None:
    assert selector.matches(item, AS_OF) is expected


@pytest.mark.parametrize(
    ("selector", "job", "expected"),
    [
        (JobSelector(id_prefix=""), {"id": "render-1"}, True),
        (JobSelector(id_prefix=""), {"id": "train-1"}, False),  # outside the scope
        (JobSelector(id_prefix="render-2"), {"id": "render-1"}, False),
        (JobSelector(state="active"), {"id": "render-1", "state": "completed"}, False),
        (
            JobSelector(older_than=OlderThan("PT1H", timedelta(hours=1))),
            {"id": "render-1", "stateTransitionTime": "2026-11-24T02:59:59Z"},
            True,
        ),
        (
            JobSelector(older_than=OlderThan("PT1H", timedelta(hours=1))),
            {"id": "render-1", "stateTransitionTime": "2026-11-24T03:00:00Z"},
            False,
        ),
        (JobSelector(id_prefix=""), {"id": 7}, False),
    ],
)
def test_every_job_field_and_the_scope_are_checked_on_our_side(
    selector: JobSelector, job: dict[str, Any], expected: bool
) -> None:
    assert selector.matches(job, SCOPE, AS_OF) is expected


@pytest.mark.parametrize(
    ("counts", "all_complete", "none"),
    [
        ({"active": 0, "running": 0, "completed": 3}, True, False),
        ({"active": 1, "running": 0, "completed": 3}, False, False),
        ({"active": 0, "running": 1, "completed": 3}, False, False),
        ({"active": 0, "running": 0, "completed": 0}, False, True),
    ],
)
def test_task_count_conditions(counts: dict[str, int], all_complete: bool, none: bool) -> None:
    assert JobSelector(all_tasks_complete=True).matches_counts(counts) is all_complete
    assert JobSelector(no_tasks=True).matches_counts(counts) is none


COUNTS: Final = {"active": 5, "running": 7, "completed": 11, "succeeded": 4, "failed": 7}


@pytest.mark.parametrize(
    ("selector", "bound"),
    [
        (TaskSelector(id_prefix=""), 23),
        (TaskSelector(state="active"), 5),
        (TaskSelector(state="preparing"), 7),
        (TaskSelector(state="running"), 7),
        (TaskSelector(state="completed"), 11),
        (TaskSelector(result="success"), 4),
        (TaskSelector(state="completed", result="failure"), 7),
        (TaskSelector(exit_codes=(1, 2)), 7),
        (TaskSelector(exit_codes=(0, 2)), 11),
        (TaskSelector(result="success", exit_codes=(3,)), 4),
    ],
)
def test_the_upper_bound_of_a_job_s_matches_comes_from_its_counts(selector: TaskSelector, bound: int) -> None:
    assert selector.upper_bound(COUNTS) == bound


# ---------------------------------------------------------------- the scope guard


def test_an_empty_scope_holds_no_job() -> None:
    assert Scope().empty and not Scope().contains("anything")


def test_everything_is_explicit() -> None:
    scope = Scope(everything=True)
    assert not scope.empty and scope.contains("x") and scope.admits_prefix("x") and scope.odata() is None


def test_prefixes_are_case_sensitive_and_admit_narrower_or_wider_prefixes() -> None:
    assert SCOPE.contains("render-7") and not SCOPE.contains("Render-7")
    assert SCOPE.admits_prefix("render-2026") and SCOPE.admits_prefix("ren") and SCOPE.admits_prefix("")
    assert not SCOPE.admits_prefix("train")
