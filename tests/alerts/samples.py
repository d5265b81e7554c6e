"""Common-schema alert payloads shaped like Microsoft's published samples.

Written from the documented schema (MicrosoftDocs/azure-monitor-docs, alerts-common-schema.md, and
the reference in functions-servicebus.md section 7): essentials, alertContext per signal type, and the
alert rule's customProperties. Each builder returns a fresh dict so tests can bend one field.
The shapes (our own values, not Microsoft's) follow
https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-common-schema and
https://learn.microsoft.com/en-us/azure/azure-monitor/alerts/alerts-payload-samples.
"""

from __future__ import annotations

import copy
from typing import Any

SUB = "11111111-2222-3333-4444-555555555555"
BATCH_ACCOUNT_ID = f"/subscriptions/{SUB}/resourceGroups/rg-batch/providers/Microsoft.Batch/batchAccounts/prodbatch"
WORKSPACE_ID = f"/subscriptions/{SUB}/resourceGroups/rg-ops/providers/Microsoft.OperationalInsights/workspaces/ops-logs"

Json = dict[str, Any]


def _essentials(
    alert_guid: str,
    *,
    rule: str,
    rule_type: str,
    signal_type: str,
    monitoring_service: str,
    target: str,
    condition: str = "Fired",
) -> Json:
    essentials: Json = {
        "alertId": f"/subscriptions/{SUB}/providers/Microsoft.AlertsManagement/alerts/{alert_guid}",
        "alertRule": rule,
        "alertRuleID": f"/subscriptions/{SUB}/resourceGroups/rg-ops/providers/{rule_type}/{rule}",
        "severity": "Sev3",
        "signalType": signal_type,
        "monitorCondition": condition,
        "monitoringService": monitoring_service,
        "alertTargetIDs": [target.lower()],
        "configurationItems": [target.rsplit("/", 1)[-1]],
        "originAlertId": f"{SUB}_rg-ops_{rule_type}_{rule}_{alert_guid[:8]}",
        "firedDateTime": "2026-11-24T03:58:24.3713213Z",
        "description": "Remediation rule for Azure Batch",
        "essentialsVersion": "1.0",
        "alertContextVersion": "1.0",
    }
    if condition == "Resolved":
        essentials["resolvedDateTime"] = "2026-11-24T04:03:16.2246313Z"
    return essentials


def metric_alert(custom: Json | None, condition: str = "Fired") -> Json:
    """A platform metric alert on the Batch account (Microsoft's "Metric alerts" sample shape)."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": _essentials(
                "12345678-aaaa-4bbb-8ccc-1234567890ab",
                rule="batch-failed-tasks",
                rule_type="microsoft.insights/metricAlerts",
                signal_type="Metric",
                monitoring_service="Platform",
                target=BATCH_ACCOUNT_ID,
                condition=condition,
            ),
            "alertContext": {
                "properties": None,
                "conditionType": "SingleResourceMultipleMetricCriteria",
                "condition": {
                    "windowSize": "PT5M",
                    "allOf": [
                        {
                            "metricName": "TaskFailEvent",
                            "metricNamespace": "Microsoft.Batch/batchAccounts",
                            "operator": "GreaterThan",
                            "threshold": "0",
                            "timeAggregation": "Total",
                            "dimensions": [],
                            "metricValue": 3.0,
                            "webTestName": None,
                        }
                    ],
                    "windowStartTime": "2026-11-24T03:50:02.178Z",
                    "windowEndTime": "2026-11-24T03:55:02.178Z",
                },
            },
            "customProperties": custom,
        },
    }


def log_search_v1(custom: Json | None, rows: list[list[Any]], columns: list[str]) -> Json:
    """A Log Analytics log search alert, API version 1 (the "Log Analytics" sample with search results)."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": _essentials(
                "22222222-aaaa-4bbb-8ccc-1234567890ab",
                rule="batch-stuck-tasks",
                rule_type="microsoft.insights/scheduledqueryrules",
                signal_type="Log",
                monitoring_service="Log Analytics",
                target=WORKSPACE_ID,
            ),
            "alertContext": {
                "SearchQuery": "BatchTaskLogs | where RunningMinutes > 600 | project JobId, TaskId, RunningMinutes",
                "SearchIntervalStartTimeUtc": "2026-11-24T03:43:00Z",
                "SearchIntervalEndtimeUtc": "2026-11-24T03:58:00Z",
                "ResultCount": len(rows),
                "LinkToSearchResults": "https://portal.azure.com#@contoso.onmicrosoft.com/blade/Microsoft_OperationsManagementSuite_Workspace/AnalyticsBlade/...",
                "LinkToFilteredSearchResultsUI": "https://portal.azure.com#@contoso.onmicrosoft.com/blade/...",
                "LinkToSearchResultsAPI": "https://api.loganalytics.io/v1/workspaces/workspaceID/query?query=...",
                "LinkToFilteredSearchResultsAPI": "https://api.loganalytics.io/v1/workspaces/workspaceID/query?query=...",
                "SeverityDescription": "Informational",
                "WorkspaceId": "aaaaaaaa-1111-2222-3333-444444444444",
                "SearchIntervalDurationMin": "15",
                "AffectedConfigurationItems": ["ops-logs"],
                "AlertType": "Number of results",
                "IncludeSearchResults": True,
                "SearchIntervalInMinutes": "15",
                "SearchResults": {
                    "tables": [
                        {
                            "name": "PrimaryResult",
                            "columns": [{"name": name, "type": "string"} for name in columns],
                            "rows": rows,
                        }
                    ],
                    "dataSources": [{"resourceId": WORKSPACE_ID, "tables": ["BatchTaskLogs"]}],
                },
                "Threshold": 0,
                "Operator": "Greater Than",
                "IncludedSearchResults": "True",
            },
            "customProperties": custom,
        },
    }


def log_search_v1_metric_measurement(
    custom: Json | None, fired: list[tuple[str, str]], columns: list[str], rows: list[list[Any]]
) -> Json:
    """A log search v1 *metric measurement* alert: ``Dimensions`` is the combination that fired, while
    ``SearchResults`` holds the complete results, rows of the other combinations included."""
    payload = log_search_v1(custom, rows, columns)
    context = payload["data"]["alertContext"]
    context["SearchQuery"] = (
        "BatchTaskLogs | summarize AggregatedValue = max(RunningMinutes) by bin(TimeGenerated, 5m), JobId, TaskId"
    )
    context["AlertType"] = "Metric measurement"
    context["Threshold"] = 600
    context["Dimensions"] = [{"name": name, "value": value} for name, value in fired]
    context["AffectedConfigurationItems"] = ["batch-node-07"]
    # "ResultCount: for metric measurement rules, the number of records that match the dimension combination"
    context["ResultCount"] = sum(
        all(name in columns and row[columns.index(name)] == value for name, value in fired) for row in rows
    )
    del context["IncludeSearchResults"]
    return payload


def log_search_v2(
    custom: Json | None, dimension_sets: list[list[tuple[str, str]]], context_properties: Json | None = None
) -> Json:
    """A log search alert, API version 2021-08-01 ("Log Alerts V2"): one allOf entry per dimension combination.

    ``context_properties`` goes to ``alertContext.properties``, where Microsoft's own v2 sample puts the
    rule's custom properties."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": _essentials(
                "33333333-aaaa-4bbb-8ccc-1234567890ab",
                rule="batch-task-errors",
                rule_type="microsoft.insights/scheduledqueryrules",
                signal_type="Log",
                monitoring_service="Log Alerts V2",
                target=WORKSPACE_ID,
            ),
            "alertContext": {
                "properties": {} if context_properties is None else context_properties,
                "conditionType": "LogQueryCriteria",
                "condition": {
                    "windowSize": "PT10M",
                    "allOf": [
                        {
                            "searchQuery": "BatchTaskErrors | summarize count() by JobId, TaskId",
                            "metricMeasureColumn": None,
                            "targetResourceTypes": "['Microsoft.OperationalInsights/workspaces']",
                            "operator": "GreaterThan",
                            "threshold": "0",
                            "timeAggregation": "Count",
                            "dimensions": [{"name": name, "value": value} for name, value in dimensions],
                            "metricValue": 1.0,
                            "failingPeriods": {"numberOfEvaluationPeriods": 1, "minFailingPeriodsToAlert": 1},
                            "linkToSearchResultsUI": "https://portal.azure.com#@contoso.onmicrosoft.com/blade/...",
                            "linkToFilteredSearchResultsUI": "https://portal.azure.com#@contoso.onmicrosoft.com/blade/...",
                            "linkToSearchResultsAPI": "https://api.loganalytics.io/v1/workspaces/.../query?query=...",
                            "linkToFilteredSearchResultsAPI": "https://api.loganalytics.io/v1/workspaces/.../query?query=...",
                        }
                        for dimensions in dimension_sets
                    ],
                    "windowStartTime": "2026-11-24T03:48:00Z",
                    "windowEndTime": "2026-11-24T03:58:00Z",
                },
            },
            "customProperties": custom,
        },
    }


def activity_log(custom: Json | None) -> Json:
    """An activity log (Administrative) alert: the targets come from custom properties only."""
    return {
        "schemaId": "azureMonitorCommonAlertSchema",
        "data": {
            "essentials": _essentials(
                "44444444-aaaa-4bbb-8ccc-1234567890ab",
                rule="batch-pool-resize",
                rule_type="microsoft.insights/activityLogAlerts",
                signal_type="Activity Log",
                monitoring_service="Activity Log - Administrative",
                target=BATCH_ACCOUNT_ID,
            ),
            "alertContext": {
                "authorization": {"action": "Microsoft.Batch/batchAccounts/pools/write", "scope": BATCH_ACCOUNT_ID},
                "channels": "Operation",
                "claims": "{}",
                "caller": "ops@contoso.com",
                "correlationId": "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
                "eventSource": "Administrative",
                "eventTimestamp": "2026-11-24T03:50:01.1234567+00:00",
                "eventDataId": "bbbbbbbb-cccc-dddd-eeee-ffffffffffff",
                "level": "Informational",
                "operationName": "Microsoft.Batch/batchAccounts/pools/write",
                "operationId": "cccccccc-dddd-eeee-ffff-000000000000",
                "status": "Succeeded",
                "subStatus": "",
                "submissionTimestamp": "2026-11-24T03:50:21.1234567+00:00",
            },
            "customProperties": custom,
        },
    }


def resolved(payload: Json) -> Json:
    """The same alert's Resolved notification."""
    changed = copy.deepcopy(payload)
    changed["data"]["essentials"]["monitorCondition"] = "Resolved"
    changed["data"]["essentials"]["resolvedDateTime"] = "2026-11-24T04:03:16.2246313Z"
    return changed
