"""Odd JSON types, deep nesting, non-string ids and ALERT_MAX_COMMANDS: always a 2xx or a clear 400."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.alerts import samples
from tests.alerts.conftest import AlertsApp
from tests.alerts.test_alerts_function import queued

TERMINATE = {"batchAction": "terminateTask"}
Path = list[str | int]


def bend(payload: dict[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of ``payload`` with the value at ``path`` replaced."""
    changed = copy.deepcopy(payload)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return changed


def v1(custom: dict[str, Any] | None = None) -> dict[str, Any]:
    return samples.log_search_v1(TERMINATE if custom is None else custom, [["j", "t"]], ["JobId", "TaskId"])


def v2(custom: dict[str, Any] | None = None) -> dict[str, Any]:
    return samples.log_search_v2(TERMINATE if custom is None else custom, [[("JobId", "j"), ("TaskId", "t")]])


CONTEXT: Path = ["data", "alertContext"]
RESULTS: Path = [*CONTEXT, "SearchResults"]
TABLE: Path = [*RESULTS, "tables", 0]
CLAUSE: Path = [*CONTEXT, "condition", "allOf", 0]


# --- Odd types where the targets are read: a 400 naming the path, never an exception ---------------------------


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (bend(v2(), [*CLAUSE, "dimensions", 0, "name"], ["JobId"]), "allOf[0].dimensions[0].name must be a string"),
        (bend(v2(), [*CLAUSE, "dimensions", 0], "JobId=j"), "allOf[0].dimensions[0] must be a JSON object"),
        (bend(v2(), [*CLAUSE, "dimensions"], {"JobId": "j"}), "allOf[0].dimensions must be a JSON array"),
        (bend(v2(), [*CONTEXT, "condition", "allOf"], 3), "condition.allOf must be a JSON array (it is a number)"),
        (bend(v2(), [*CONTEXT, "condition", "allOf"], [None]), "condition.allOf[0] must be a JSON object (it is null)"),
        (bend(v2(), [*CONTEXT, "condition"], "GreaterThan 0"), "alertContext.condition must be a JSON object"),
        (bend(v1(), [*TABLE, "rows"], 2), "tables[0].rows must be a JSON array (it is a number)"),
        (bend(v1(), [*TABLE, "rows", 0], "j,t"), "tables[0].rows[0] must be a JSON array (it is 'j,t')"),
        (bend(v1(), [*TABLE, "columns", 0, "name"], {"n": "JobId"}), "columns[0].name must be a string"),
        (bend(v1(), [*TABLE, "columns", 0], "JobId"), "tables[0].columns[0] must be a JSON object"),
        (bend(v1(), [*RESULTS, "tables"], "PrimaryResult"), "SearchResults.tables must be a JSON array"),
        (bend(v1(), [*RESULTS, "tables", 0], []), "SearchResults.tables[0] must be a JSON object (it is an array)"),
        (bend(v1(), RESULTS, [["j", "t"]]), "alertContext.SearchResults must be a JSON object (it is an array)"),
        (bend(v1(), [*CONTEXT, "Dimensions"], {"JobId": "j"}), "alertContext.Dimensions must be a JSON array"),
        (bend(v1(), [*CONTEXT, "Dimensions"], [{"value": "j"}]), "Dimensions[0].name must be a string (it is missing)"),
        (bend(v1(), [*CONTEXT, "AlertType"], 1), "alertContext.AlertType must be a string (it is a number)"),
    ],
)
def test_an_odd_type_where_targets_are_read_is_a_400_naming_it(app: AlertsApp, payload: Any, named: str) -> None:
    answer = app.post(payload)
    assert answer.status == 400
    assert named in answer.body["reason"]
    assert answer.body["alertId"].endswith("1234567890ab")
    assert app.queue.offered == 0


def test_rows_without_columns_name_no_target(app: AlertsApp) -> None:
    answer = app.post(bend(v1(), [*TABLE, "columns"], None))
    assert answer.status == 400
    assert "jobId is required" in answer.body["reason"]


def test_an_alert_that_asks_for_nothing_is_not_judged_on_its_alert_context(app: AlertsApp) -> None:
    # Action groups are shared by many rules: an alert without batchAction is acknowledged whatever its context.
    answer = app.post(bend(v1({"Team": "render"}), RESULTS, [1, 2, 3]))
    assert answer.status == 200
    assert "no batchAction" in answer.body["reason"]


def test_null_containers_count_as_absent(app: AlertsApp) -> None:
    payload = bend(v2({**TERMINATE, "batchJobId": "j", "batchTaskId": "t"}), [*CLAUSE, "dimensions"], None)
    assert app.post(payload).status == 202
    assert app.post(bend(payload, [*CONTEXT, "condition"], None)).status == 202
    assert app.post(bend(payload, CONTEXT, None)).status == 202


def test_a_dimension_without_a_value_names_nothing(app: AlertsApp) -> None:
    payload = samples.log_search_v2({**TERMINATE, "batchJobId": "fixed"}, [[("TaskId", "t1")], [("TaskId", "")]])
    payload["data"]["alertContext"]["condition"]["allOf"][1]["dimensions"].append({"name": "TaskId"})
    answer = app.post(payload)
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "fixed", "t1", "local")]


# --- Ids must be strings: no str() of true, numbers or lists ------------------------------------------------


@pytest.mark.parametrize("value", [True, 42, 4.5, ["j"], {"id": "j"}])
@pytest.mark.parametrize("name", ["batchJobId", "batchTaskId", "batchAction", "batchAccount", "batchReason"])
def test_a_non_string_batch_property_is_a_400_naming_it(app: AlertsApp, name: str, value: Any) -> None:
    custom = {"batchAction": "terminateTask", "batchJobId": "j", "batchTaskId": "t", name: value}
    answer = app.post(samples.metric_alert(custom))
    assert answer.status == 400
    assert answer.body["reason"].startswith(f"data.customProperties.{name} must be a string (it is ")
    assert "True" not in answer.body["reason"] and "None" not in answer.body["reason"]
    assert app.queue.offered == 0


def test_a_non_string_property_in_the_alert_context_is_a_400_naming_it(app: AlertsApp) -> None:
    answer = app.post(samples.log_search_v2(None, [[("TaskId", "t")]], {**TERMINATE, "batchJobId": 7}))
    assert answer.status == 400
    assert answer.body["reason"] == "data.alertContext.properties.batchJobId must be a string (it is a number)"


def test_other_custom_properties_may_have_any_type(app: AlertsApp) -> None:
    custom = {**TERMINATE, "batchJobId": "j", "batchTaskId": "t", "Team": [[[{"a": None}]]], "Sev": 3}
    assert app.post(samples.metric_alert(custom)).status == 202


@pytest.mark.parametrize(
    ("value", "kind"), [(7, "a number"), (True, "true"), (["t"], "an array"), ({"t": 1}, "an object")]
)
def test_a_non_string_target_value_is_rejected_with_its_type(app: AlertsApp, value: Any, kind: str) -> None:
    payload = samples.log_search_v2(TERMINATE, [[("JobId", "j"), ("TaskId", "good")], [("JobId", "j")]])
    payload["data"]["alertContext"]["condition"]["allOf"][1]["dimensions"].append({"name": "TaskId", "value": value})
    answer = app.post(payload)
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "j", "good", "local")]
    (rejected,) = answer.body["rejected"]
    assert rejected.startswith("terminateTask at data.alertContext.condition.allOf[1].dimensions: ")
    assert f"TaskId is {kind}, not a string" in rejected


def test_non_string_cells_in_search_results_are_rejected(app: AlertsApp) -> None:
    rows: list[list[Any]] = [[12, "t1"], ["j", 3.0]]
    answer = app.post(samples.log_search_v1(TERMINATE, rows, ["JobId", "TaskId"]))
    assert answer.status == 400
    assert answer.body["rejected"] == [
        "terminateTask at data.alertContext.SearchResults.tables[0].rows[0]: JobId is a number, not a string "
        "(have the query return ids as strings: tostring())",
        "terminateTask at data.alertContext.SearchResults.tables[0].rows[1]: TaskId is a number, not a string "
        "(have the query return ids as strings: tostring())",
    ]


def test_a_column_the_rule_fixes_is_not_read(app: AlertsApp) -> None:
    rows: list[list[Any]] = [[12, "t1"]]  # JobId is a number, but the rule names the job itself
    answer = app.post(samples.log_search_v1({**TERMINATE, "batchJobId": "nightly"}, rows, ["JobId", "TaskId"]))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "nightly", "t1", "local")]


def test_two_columns_naming_different_jobs_in_one_row_are_rejected(app: AlertsApp) -> None:
    answer = app.post(samples.log_search_v1(TERMINATE, [["a", "b", "t"]], ["JobId", "jobid", "TaskId"]))
    assert answer.status == 400
    assert "jobid 'b' contradicts jobId 'a' of another column" in answer.body["reason"]


# --- Reasons say "missing", never 'None' -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "named"),
    [
        (["schemaId"], "schemaId is missing; expected 'azureMonitorCommonAlertSchema'"),
        (
            ["data", "essentials", "monitorCondition"],
            "monitorCondition must be one of ['Fired', 'Resolved'] (it is missing)",
        ),
        (["data", "essentials", "alertId"], "data.essentials.alertId must be a non-empty string (it is missing)"),
        (["data", "essentials"], "data.essentials must be a JSON object (it is missing)"),
    ],
)
def test_a_missing_field_is_called_missing(app: AlertsApp, path: list[str], named: str) -> None:
    payload = copy.deepcopy(samples.metric_alert(TERMINATE))
    target: Any = payload
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    answer = app.post(payload)
    assert answer.status == 400
    assert named in answer.body["reason"]
    assert "None" not in answer.body["reason"]


def test_a_null_field_is_called_null(app: AlertsApp) -> None:
    answer = app.post(bend(samples.metric_alert(TERMINATE), ["schemaId"], None))
    assert answer.body["reason"].startswith("schemaId is null; expected")


# --- JSON that json.loads itself cannot take -------------------------------------------------------------------


def _spliced(payload: dict[str, Any], marker: str, raw: str) -> bytes:
    return json.dumps(payload).replace(json.dumps(marker), raw).encode()


@pytest.mark.parametrize("opener", ["[", '{"a":'])
def test_deeply_nested_json_is_a_400(app: AlertsApp, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    deep = opener * 1100 + "1" + closer * 1100
    inside_a_field = _spliced(samples.metric_alert({**TERMINATE, "Team": "DEEP"}), "DEEP", deep)
    for raw in (inside_a_field, deep.encode()):
        answer = app.post(raw)
        assert answer.status == 400
        assert answer.body["reason"] == "payload nests JSON too deeply; a common-schema alert is a few levels deep"
    assert app.queue.offered == 0


def test_nesting_json_can_take_is_read_without_recursion(app: AlertsApp) -> None:
    deep = "[" * 400 + "]" * 400
    payload = samples.log_search_v2(TERMINATE, [[("JobId", "j"), ("TaskId", "DEEP")]])
    answer = app.post(_spliced(payload, "DEEP", deep))
    assert answer.status == 400
    assert "TaskId is an array, not a string" in answer.body["reason"]


def test_a_huge_integer_is_a_400(app: AlertsApp) -> None:
    raw = _spliced(samples.metric_alert({**TERMINATE, "Count": "BIG"}), "BIG", "9" * 5000)
    answer = app.post(raw)
    assert answer.status == 400
    assert answer.body["reason"].startswith("payload is not usable JSON (")


def test_lone_surrogates_are_not_text(app: AlertsApp) -> None:
    payload = samples.metric_alert({**TERMINATE, "batchJobId": "j", "batchTaskId": "t"})
    alert_id = payload["data"]["essentials"]["alertId"]
    answer = app.post(_spliced(payload, alert_id, '"alert-\\ud800"'))
    assert answer.status == 400
    assert answer.body["reason"] == "data.essentials.alertId is not valid Unicode text"

    rows = samples.log_search_v1(TERMINATE, [["j", "SURROGATE"], ["j", "t2"]], ["JobId", "TaskId"])
    answer = app.post(_spliced(rows, "SURROGATE", '"\\udfff"'))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "j", "t2", "local")]
    assert "TaskId is not valid Unicode text" in answer.body["rejected"][0]


# --- ALERT_MAX_COMMANDS ----------------------------------------------------------------------------------------


def _rows(count: int) -> dict[str, Any]:
    return samples.log_search_v1(TERMINATE, [[f"job-{i}", "t"] for i in range(count)], ["JobId", "TaskId"])


def test_an_alert_over_the_command_limit_is_a_400_saying_how_many(app: AlertsApp) -> None:
    app.install(ALERT_MAX_COMMANDS="2")
    answer = app.post(_rows(3))
    assert answer.status == 400
    assert answer.body["reason"] == (
        "the alert would make 3 terminateTask commands; ALERT_MAX_COMMANDS allows at most 2 per alert, "
        "so none were enqueued (narrow the alert rule or raise ALERT_MAX_COMMANDS)"
    )
    assert "commands" not in answer.body
    assert app.queue.offered == 0

    assert app.post(_rows(2)).status == 202
    assert len(queued(app)) == 2


def test_the_default_limit_is_100_commands(app: AlertsApp) -> None:
    over = app.post(_rows(101))
    assert over.status == 400
    assert "would make 101 terminateTask commands" in over.body["reason"] and "at most 100" in over.body["reason"]
    assert app.post(_rows(100)).status == 202
    assert app.queue.offered == 100


def test_the_limit_counts_commands_not_rejected_targets_or_duplicates(app: AlertsApp) -> None:
    app.install(ALERT_MAX_COMMANDS="2")
    rows = [["a", "t"], ["a", "t"], ["b", "t"], ["bad job", "t"]]
    answer = app.post(samples.log_search_v1(TERMINATE, rows, ["JobId", "TaskId"]))
    assert answer.status == 202
    assert len(answer.body["commands"]) == 2 and len(answer.body["rejected"]) == 1


def test_a_long_list_of_rejected_targets_is_cut_with_a_count(app: AlertsApp) -> None:
    answer = app.post(samples.log_search_v1(TERMINATE, [[f"bad job {i}", "t"] for i in range(25)], ["JobId", "TaskId"]))
    assert answer.status == 400
    rejected = answer.body["rejected"]
    assert len(rejected) == 21 and rejected[-1] == "... and 5 more"
    assert answer.body["reason"].endswith("; ... and 5 more")
