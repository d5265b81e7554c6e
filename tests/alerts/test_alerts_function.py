"""POST /api/alerts through function_app's registered function, with common-schema payloads."""

from __future__ import annotations

import json

from shared.contract import COMMAND_ID_PATTERN
from tests.alerts import samples
from tests.alerts.conftest import AlertsApp

TERMINATE = {"batchAction": "terminateTask", "batchJobId": "render-42", "batchTaskId": "frame-0007"}


def queued(app: AlertsApp) -> list[tuple[str, str, str | None, str]]:
    """(action, jobId, taskId, account) of every command on the queue, read through the contract."""
    return [(c.action, c.job_id, c.task_id, c.account) for c in app.queue.commands(["local"], "local")]


def test_metric_alert_with_custom_properties_enqueues_one_command(app: AlertsApp) -> None:
    answer = app.post(samples.metric_alert(TERMINATE))

    assert answer.status == 202
    assert queued(app) == [("terminateTask", "render-42", "frame-0007", "local")]
    (command,) = answer.body["commands"]
    assert command == {
        "commandId": command["commandId"],
        "action": "terminateTask",
        "account": "local",
        "jobId": "render-42",
        "taskId": "frame-0007",
    }
    assert COMMAND_ID_PATTERN.fullmatch(command["commandId"])
    (message,) = app.queue.queued.values()
    assert message.message_id == command["commandId"]
    assert json.loads(message.body)["requestedBy"] == "alert:batch-failed-tasks"
    assert answer.body["alertId"].endswith("/alerts/12345678-aaaa-4bbb-8ccc-1234567890ab")


def test_azure_monitor_retries_of_one_notification_enqueue_nothing_new(app: AlertsApp) -> None:
    first = app.post(samples.log_search_v2({"batchAction": "terminateTask"}, [[("JobId", "j1"), ("TaskId", "t1")]]))
    again = app.post(samples.log_search_v2({"batchAction": "terminateTask"}, [[("JobId", "j1"), ("TaskId", "t1")]]))

    assert first.status == again.status == 202
    assert first.body["commands"] == again.body["commands"]
    assert app.queue.offered == 2 and len(app.queue.queued) == 1  # the queue's duplicate detection drops it


def test_log_search_v1_rows_give_one_command_per_distinct_target(app: AlertsApp) -> None:
    rows = [
        ["render-1", "frame-1", 620],
        ["render-1", "frame-2", 700],
        ["render-1", "frame-1", 640],  # the same task twice in the results
        ["render-2", "frame-1", 900],
    ]
    payload = samples.log_search_v1({"batchAction": "terminateTask"}, rows, ["JobId", "TaskId", "RunningMinutes"])
    answer = app.post(payload)

    assert answer.status == 202
    assert queued(app) == [
        ("terminateTask", "render-1", "frame-1", "local"),
        ("terminateTask", "render-1", "frame-2", "local"),
        ("terminateTask", "render-2", "frame-1", "local"),
    ]
    assert len({c["commandId"] for c in answer.body["commands"]}) == 3


def test_log_search_v2_dimensions_name_targets_in_any_letter_case(app: AlertsApp) -> None:
    dimensions = [
        [("jobId", "etl-7"), ("taskId", "load-3"), ("Computer", "node-1")],
        [("JOBID", "etl-7"), ("TASKID", "load-4")],
    ]
    answer = app.post(samples.log_search_v2({"batchAction": "reactivateTask"}, dimensions))

    assert answer.status == 202
    assert queued(app) == [
        ("reactivateTask", "etl-7", "load-3", "local"),
        ("reactivateTask", "etl-7", "load-4", "local"),
    ]


def test_the_rules_fixed_job_combines_with_per_firing_task_ids(app: AlertsApp) -> None:
    custom = {"batchAction": "terminateTask", "batchJobId": "nightly"}
    answer = app.post(samples.log_search_v2(custom, [[("TaskId", "a")], [("TaskId", "b")]]))

    assert answer.status == 202
    assert queued(app) == [("terminateTask", "nightly", "a", "local"), ("terminateTask", "nightly", "b", "local")]


def test_empty_or_null_custom_properties_count_as_unset(app: AlertsApp) -> None:
    custom = {**TERMINATE, "batchAccount": "", "batchReason": None}
    answer = app.post(samples.metric_alert(custom))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "render-42", "frame-0007", "local")]


def test_activity_log_alert_uses_the_custom_properties(app: AlertsApp) -> None:
    answer = app.post(samples.activity_log({"batchAction": "reactivateTask", "batchJobId": "j", "batchTaskId": "t"}))
    assert answer.status == 202
    assert queued(app) == [("reactivateTask", "j", "t", "local")]


def test_commands_for_the_same_target_from_different_alerts_have_different_ids(app: AlertsApp) -> None:
    metric = app.post(samples.metric_alert(TERMINATE))
    activity = app.post(samples.activity_log(TERMINATE))
    assert metric.body["commands"][0]["commandId"] != activity.body["commands"][0]["commandId"]
    assert len(app.queue.queued) == 2


def test_resolved_alert_is_acknowledged_and_does_nothing(app: AlertsApp) -> None:
    answer = app.post(samples.resolved(samples.metric_alert(TERMINATE)))
    assert answer.status == 200
    assert "Resolved" in answer.body["reason"] and "only Fired" in answer.body["reason"]
    assert app.queue.offered == 0


def test_alert_without_batch_properties_does_nothing(app: AlertsApp) -> None:
    answer = app.post(samples.metric_alert(None))  # "If custom properties aren't set ... the field is null."
    assert answer.status == 200
    assert "no batchAction custom property" in answer.body["reason"]
    assert app.post(samples.metric_alert({"Team": "render"})).status == 200
    assert app.queue.offered == 0


def test_action_outside_the_allow_list_is_refused_with_the_reason(app: AlertsApp) -> None:
    delete = {**TERMINATE, "batchAction": "deleteTask"}
    answer = app.post(samples.metric_alert(delete))
    assert answer.status == 200
    assert "'deleteTask' is not allowed" in answer.body["reason"]
    assert "ALERT_ALLOWED_ACTIONS" in answer.body["reason"]
    assert app.post(samples.metric_alert({**TERMINATE, "batchAction": "rebootNode"})).status == 200
    assert app.queue.offered == 0

    app.install(ALERT_ALLOWED_ACTIONS="deleteTask")
    assert app.post(samples.metric_alert(delete)).status == 202
    assert queued(app) == [("deleteTask", "render-42", "frame-0007", "local")]


def test_terminate_job_takes_the_reason_and_account_properties(app: AlertsApp) -> None:
    accounts = json.dumps({"local": "http://127.0.0.1:9", "eu": "http://127.0.0.1:10"})
    app.install(ALERT_ALLOWED_ACTIONS="terminateJob", BATCH_ACCOUNTS=accounts, BATCH_DEFAULT_ACCOUNT="local")
    custom = {"batchAction": "terminateJob", "batchAccount": "eu", "batchJobId": "runaway", "batchReason": "CostAlert"}
    answer = app.post(samples.metric_alert(custom))

    assert answer.status == 202
    (command,) = app.queue.commands(["local", "eu"], "local")
    assert (command.action, command.account, command.job_id, command.task_id) == ("terminateJob", "eu", "runaway", None)
    assert command.reason == "CostAlert"


def test_targets_breaking_the_contract_are_listed_and_the_rest_enqueued(app: AlertsApp) -> None:
    rows = [["good-job", "t1"], ["bad job!", "t2"]]
    answer = app.post(samples.log_search_v1({"batchAction": "terminateTask"}, rows, ["JobId", "TaskId"]))
    assert answer.status == 202
    assert queued(app) == [("terminateTask", "good-job", "t1", "local")]
    (rejected,) = answer.body["rejected"]
    assert "bad job!" in rejected and "jobId" in rejected


def test_an_alert_whose_batch_properties_make_no_valid_command_is_a_400(app: AlertsApp) -> None:
    no_task = app.post(samples.metric_alert({"batchAction": "terminateTask", "batchJobId": "j"}))
    assert no_task.status == 400
    assert "taskId is required for terminateTask" in no_task.body["reason"]

    unknown_account = app.post(samples.metric_alert({**TERMINATE, "batchAccount": "nowhere"}))
    assert unknown_account.status == 400
    assert "account 'nowhere' is not configured" in unknown_account.body["reason"]
    assert app.queue.offered == 0


def test_a_queue_failure_answers_503_so_the_action_group_retries(app: AlertsApp) -> None:
    app.queue.fail_enqueue = True
    answer = app.post(samples.metric_alert(TERMINATE))
    assert answer.status == 503
    assert "ConnectionError" in answer.body["reason"]


def test_route_binding_is_a_function_key_post_on_api_alerts() -> None:
    from tests.support import indexed_functions  # noqa: PLC0415 - same cached index the fixture uses

    bindings = [json.loads(raw) for raw in indexed_functions()["alerts"].get_raw_bindings()]
    trigger = next(b for b in bindings if b["type"] == "httpTrigger")
    assert (trigger["route"], trigger["methods"], trigger["authLevel"]) == ("alerts", ["POST"], "FUNCTION")
