"""Payloads that are not valid common-schema alerts get a 400 whose reason names the problem."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from shared.alerts import MAX_ALERT_BYTES
from tests.alerts import samples
from tests.alerts.conftest import AlertsApp

CUSTOM = {"batchAction": "terminateTask", "batchJobId": "j", "batchTaskId": "t"}


def bent(path: list[str], value: Any) -> dict[str, Any]:
    """A valid metric alert with the field at ``path`` replaced (or removed when value is ...)."""
    payload = copy.deepcopy(samples.metric_alert(CUSTOM))
    target = payload
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return payload


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        (b"", "not valid JSON"),
        (b"alertId=1&monitorCondition=Fired", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "payload must be a JSON object, not an array"),
        (bent(["schemaId"], "Microsoft.Insights/activityLogs"), "schemaId is 'Microsoft.Insights/activityLogs'"),
        (bent(["schemaId"], ...), "expected 'azureMonitorCommonAlertSchema'"),
        (bent(["data"], ...), "data must be a JSON object"),
        (bent(["data", "essentials"], ...), "data.essentials must be a JSON object"),
        (bent(["data", "essentials", "alertId"], ...), "data.essentials.alertId must be a non-empty string"),
        (bent(["data", "essentials", "alertId"], 42), "data.essentials.alertId must be a non-empty string"),
        (bent(["data", "essentials", "monitorCondition"], "Active"), "monitorCondition must be one of"),
        (
            bent(["data", "customProperties"], "batchAction=terminateTask"),
            "data.customProperties must be a JSON object",
        ),
        (bent(["data", "alertContext"], []), "data.alertContext must be a JSON object"),
    ],
)
def test_malformed_payload_is_a_400_naming_the_problem(app: AlertsApp, payload: Any, named: str) -> None:
    answer = app.post(payload)
    assert answer.status == 400
    assert named in answer.body["reason"]
    assert app.queue.offered == 0


def test_payload_over_256_kb_is_refused_before_parsing(app: AlertsApp) -> None:
    rows = [[f"job-{i}", f"task-{i}", "x" * 200] for i in range(1500)]
    payload = json.dumps(samples.log_search_v1(CUSTOM, rows, ["JobId", "TaskId", "Detail"])).encode()
    assert len(payload) > MAX_ALERT_BYTES
    answer = app.post(payload)
    assert answer.status == 400
    assert f"payload is {len(payload)} bytes" in answer.body["reason"] and "262144" in answer.body["reason"]
    assert app.queue.offered == 0
