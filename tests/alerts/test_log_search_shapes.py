"""Where log search alerts put the rule's custom properties and the targets of one firing.

The payload shapes follow Microsoft's documentation of the common alert schema; the values are our own:

- https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-common-schema
  ("Log search alerts context fields": ``AlertType`` is *Metric measurement* or *Number of results*;
  ``Dimensions``: "for metric measurement rules, the metric dimensions on which the alert was triggered";
  ``SearchResults``: "the complete search results"; ``ResultCount``: "for metric measurement rules, the
  number of records that match the specific dimension combination"; ``IncludedSearchResults``: whether
  Azure embedded the results, which it leaves out when they would push the alert over 256 KB);
- https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-payload-samples
  (the "Log Alerts V2" sample carries the rule's properties in ``alertContext.properties``; the
  "Log Analytics" v1 sample is a metric measurement alert with ``Dimensions``, ``SearchResults``
  and ``AffectedConfigurationItems``).
"""

from __future__ import annotations

from typing import Any

from tests.alerts import samples
from tests.alerts.conftest import AlertsApp
from tests.alerts.test_alerts_function import queued

TERMINATE = {"batchAction": "terminateTask"}
COLUMNS = ["Computer", "JobId", "TaskId", "AggregatedValue"]
ROWS: list[list[Any]] = [
    ["node-7", "render-1", "frame-1", 720],
    ["node-7", "render-1", "frame-2", 650],
    ["node-3", "render-2", "frame-1", 12],  # another combination's row, below the threshold
    ["node-9", "ingest", "load-3", 900],  # another combination that may fire on its own
]


# --- Custom properties in alertContext.properties (log search v2) ---------------------------------------------


def test_v2_custom_properties_in_the_alert_context_are_read(app: AlertsApp) -> None:
    payload = samples.log_search_v2(None, [[("JobId", "etl-1"), ("TaskId", "t1")]], context_properties=TERMINATE)
    answer = app.post(payload)
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "etl-1", "t1", "local")]


def test_custom_properties_win_over_the_alert_context_property_by_property(app: AlertsApp) -> None:
    in_context = {"batchAction": "reactivateTask", "batchJobId": "from-context", "Owner": "ops"}
    custom = {"batchJobId": "from-custom"}
    answer = app.post(samples.log_search_v2(custom, [[("TaskId", "t1")]], context_properties=in_context))
    assert answer.status == 202
    # batchJobId is in both: customProperties wins; batchAction only in the context: it applies.
    assert queued(app) == [("reactivateTask", "from-custom", "t1", "local")]


def test_an_empty_custom_property_does_not_hide_the_alert_context_value(app: AlertsApp) -> None:
    in_context = {"batchAction": "terminateTask", "batchJobId": "from-context"}
    custom = {"batchAction": "", "batchJobId": None}  # empty and null count as unset
    answer = app.post(samples.log_search_v2(custom, [[("TaskId", "t1")]], context_properties=in_context))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "from-context", "t1", "local")]


def test_v2_alert_context_properties_of_the_wrong_type_are_a_400(app: AlertsApp) -> None:
    payload = samples.log_search_v2(TERMINATE, [[("JobId", "j"), ("TaskId", "t")]])
    payload["data"]["alertContext"]["properties"] = ["batchAction", "terminateTask"]
    answer = app.post(payload)
    assert answer.status == 400
    assert answer.body["reason"] == "data.alertContext.properties must be a JSON object (it is an array)"
    assert app.queue.offered == 0


def test_activity_log_context_properties_describe_the_event_and_are_not_custom_properties(app: AlertsApp) -> None:
    payload = samples.activity_log(None)
    # An activity log alert's alertContext.properties holds the event's own properties.
    payload["data"]["alertContext"]["properties"] = {"batchAction": "terminateTask", "batchJobId": "j"}
    answer = app.post(payload)
    assert answer.status == 200
    assert "no batchAction custom property" in answer.body["reason"]
    assert app.queue.offered == 0


def test_an_empty_batch_action_is_unset(app: AlertsApp) -> None:
    answer = app.post(samples.metric_alert({"batchAction": "", "batchJobId": "j", "batchTaskId": "t"}))
    assert answer.status == 200
    assert "no batchAction custom property" in answer.body["reason"]
    assert app.queue.offered == 0


# --- Log search v1, metric measurement: only the rows of the combination that fired ---------------------------


def test_metric_measurement_acts_only_on_the_rows_of_the_fired_combination(app: AlertsApp) -> None:
    payload = samples.log_search_v1_metric_measurement(TERMINATE, [("Computer", "node-7")], COLUMNS, ROWS)
    assert payload["data"]["alertContext"]["ResultCount"] == 2
    answer = app.post(payload)
    assert answer.status == 202
    assert queued(app) == [
        ("terminateTask", "render-1", "frame-1", "local"),
        ("terminateTask", "render-1", "frame-2", "local"),
    ]


def test_number_of_results_alert_still_acts_on_every_row(app: AlertsApp) -> None:
    answer = app.post(samples.log_search_v1(TERMINATE, ROWS, COLUMNS))  # AlertType "Number of results"
    assert answer.status == 202
    assert len(queued(app)) == 4


def test_metric_measurement_matches_every_fired_dimension(app: AlertsApp) -> None:
    columns = ["Computer", "Region", "JobId", "TaskId"]
    rows = [["node-7", "west", "a", "1"], ["node-7", "east", "b", "2"], ["node-8", "west", "c", "3"]]
    fired = [("Computer", "node-7"), ("Region", "west")]
    answer = app.post(samples.log_search_v1_metric_measurement(TERMINATE, fired, columns, rows))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "a", "1", "local")]


def test_metric_measurement_split_by_job_and_task_names_its_target(app: AlertsApp) -> None:
    fired = [("JobId", "ingest"), ("TaskId", "load-3")]
    answer = app.post(samples.log_search_v1_metric_measurement(TERMINATE, fired, COLUMNS, ROWS))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "ingest", "load-3", "local")]


def test_metric_measurement_alert_type_is_compared_in_any_letter_case(app: AlertsApp) -> None:
    payload = samples.log_search_v1_metric_measurement(TERMINATE, [("Computer", "node-9")], COLUMNS, ROWS)
    payload["data"]["alertContext"]["AlertType"] = "Metric Measurement"  # the spelling of the docs' field table
    answer = app.post(payload)
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "ingest", "load-3", "local")]


def test_metric_measurement_without_dimensions_is_one_combination_of_every_row(app: AlertsApp) -> None:
    answer = app.post(samples.log_search_v1_metric_measurement(TERMINATE, [], COLUMNS, ROWS))
    assert answer.status == 202
    assert len(queued(app)) == 4


def test_a_non_text_cell_never_matches_a_fired_dimension(app: AlertsApp) -> None:
    columns = ["Node", "JobId", "TaskId"]
    rows: list[list[Any]] = [[7, "a", "1"], ["7", "b", "2"]]
    answer = app.post(samples.log_search_v1_metric_measurement(TERMINATE, [("Node", "7")], columns, rows))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "b", "2", "local")]


def test_metric_measurement_whose_rows_miss_the_fired_combination_says_so(app: AlertsApp) -> None:
    payload = samples.log_search_v1_metric_measurement(TERMINATE, [("Computer", "node-1")], COLUMNS, ROWS)
    answer = app.post(payload)
    assert answer.status == 400
    reason = answer.body["reason"]
    assert "none of the 4 search-result rows belongs to the dimension combination that fired" in reason
    assert "Computer='node-1'" in reason
    assert "jobId is required" in reason
    assert app.queue.offered == 0


def test_a_dimension_the_results_lack_matches_no_row(app: AlertsApp) -> None:
    fired = [("Computer", "node-7"), ("Cluster", "c1")]  # no Cluster column
    answer = app.post(samples.log_search_v1_metric_measurement(TERMINATE, fired, COLUMNS, ROWS))
    assert answer.status == 400
    assert "Cluster='c1'" in answer.body["reason"]


# --- Log search v1 without its search results -----------------------------------------------------------------


def _without_results(custom: dict[str, Any]) -> dict[str, Any]:
    payload = samples.log_search_v1(custom, [], COLUMNS)
    context = payload["data"]["alertContext"]
    context["IncludedSearchResults"] = "False"
    del context["SearchResults"]
    return payload


def test_results_left_out_and_no_target_says_azure_left_them_out(app: AlertsApp) -> None:
    answer = app.post(_without_results(TERMINATE))
    assert answer.status == 400
    reason = answer.body["reason"]
    assert "Azure left the search results out of this alert" in reason
    assert "Include search results" in reason and "dimensions" in reason
    assert app.queue.offered == 0


def test_results_left_out_do_not_matter_when_the_rule_names_the_target(app: AlertsApp) -> None:
    answer = app.post(_without_results({**TERMINATE, "batchJobId": "j", "batchTaskId": "t"}))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "j", "t", "local")]


def test_included_results_flag_of_an_unexpected_type_is_only_ignored(app: AlertsApp) -> None:
    payload = _without_results(TERMINATE)
    payload["data"]["alertContext"]["IncludedSearchResults"] = {"value": False}
    answer = app.post(payload)
    assert answer.status == 400
    assert "jobId is required" in answer.body["reason"]
    assert "Azure left" not in answer.body["reason"]


def test_a_long_fired_combination_is_shown_cut_short(app: AlertsApp) -> None:
    fired = [(f"Dim{i}", f"v{i}") for i in range(8)]
    answer = app.post(samples.log_search_v1_metric_measurement(TERMINATE, fired, COLUMNS, ROWS))
    assert answer.status == 400
    assert "(Dim0='v0', Dim1='v1', Dim2='v2', Dim3='v3', Dim4='v4', ... 3 more)" in answer.body["reason"]
