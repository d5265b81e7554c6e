"""Day-two operations: the alert rules, their action group and the operations workbook.

Every log query reads the JSON lines the code writes (shared/processor.py: one ``commandProcessed`` line per
command, with a ``fanOut`` object for selector pages; shared/policies.py: one ``retentionEnqueued`` line per
retention timer run); the tests check each field a query
reads against the code, so renaming a field breaks here rather than silently muting an alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import pytest

from shared.config import SETTINGS
from shared.policies import RETENTION_RUN_EVENT, RUN_LINE_FIELDS
from shared.processor import _LOGGED_FIELDS
from tests.infra.bicep import INFRA, REPO, Model, Scope, evaluate, module_scope, only, render, resources

ALERTS: Final = "app/alerts.bicep"
WORKBOOK: Final = "app/workbook.bicep"
WORKBOOK_JSON: Final = INFRA / "app" / "workbook.json"
METRIC_ALERT: Final = "Microsoft.Insights/metricAlerts"
LOG_ALERT: Final = "Microsoft.Insights/scheduledQueryRules"
COMMAND_EVENT: Final = "commandProcessed"
_FIELD: Final = re.compile(r"\bline\.(\w+)")
_PLACEHOLDER: Final = re.compile(r"__[A-Z][A-Z_]*__")

# symbol -> what it watches
EXPECTED_RULES: Final = {
    "commandDeadLetterAlert": METRIC_ALERT,
    "topicSizeAlert": METRIC_ALERT,
    "retriesExhaustedAlert": LOG_ALERT,
    "batchErrorsAlert": LOG_ALERT,
    "functionFailuresAlert": LOG_ALERT,
    "missedRetentionRunAlert": LOG_ALERT,
}


def _command_fields() -> set[str]:
    """The keys of the commandProcessed line: the logged outcome fields plus what processor.py adds."""
    source = (REPO / "shared" / "processor.py").read_text(encoding="utf-8")
    extras = {"event", "errorCode", "settlement", "totalMs", "fanOut"}
    for extra in extras - {"event"}:
        assert extra in source, f"shared/processor.py no longer logs {extra}"
    assert f'"event": "{COMMAND_EVENT}"' in source
    return set(_LOGGED_FIELDS) | extras


def _run_fields() -> set[str]:
    source = (REPO / "shared" / "policies.py").read_text(encoding="utf-8")
    for name in RUN_LINE_FIELDS:
        assert f'"{name}"' in source, f"shared/policies.py no longer logs {name}"
    return set(RUN_LINE_FIELDS)


def _rule(model: Model, symbol: str) -> Mapping[str, Any]:
    resource: Mapping[str, Any] = model[ALERTS]["resources"][symbol]
    return resource


def _props(model: Model, symbol: str) -> Mapping[str, Any]:
    props: Mapping[str, Any] = _rule(model, symbol)["config"]["properties"]
    return props


def _alerts_scope(model: Model) -> Scope:
    return module_scope(model, "main.bicep", ALERTS)


def _query(model: Model, symbol: str) -> str:
    """The KQL text of a log alert (the template before replace() fills its placeholders)."""
    (criterion,) = _props(model, symbol)["criteria"]["allOf"]
    variable = model[ALERTS]["variables"][criterion["query"]]["value"]
    if isinstance(variable, dict):
        function = variable["function"]
        assert function["type"] == "replace"
        variable = function["parameters"]["original_string"]
    assert isinstance(variable, str)
    return variable


def _log_queries(model: Model) -> Iterator[tuple[str, str]]:
    for symbol, kind in EXPECTED_RULES.items():
        if kind == LOG_ALERT:
            yield symbol, _query(model, symbol)


def _check_fields(query: str, where: str) -> None:
    fields = set(_FIELD.findall(query))
    if not fields:
        return
    if RETENTION_RUN_EVENT in query:
        known = _run_fields()
    else:
        assert COMMAND_EVENT in query, f"{where}: reads line.* but names neither event"
        known = _command_fields()
    unknown = fields - known
    assert not unknown, f"{where}: the code logs no field(s) {sorted(unknown)}"


def _workbook() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(WORKBOOK_JSON.read_text(encoding="utf-8"))
    return data


def _workbook_items() -> list[Mapping[str, Any]]:
    return list(_workbook()["items"])


# --- alert rules -------------------------------------------------------------------------------------------


def test_every_alert_rule_exists(model: Model) -> None:
    rules = [(file, symbol, resource["type"]) for file, symbol, resource in resources(model)]
    rules = [(file, symbol, type_) for file, symbol, type_ in rules if type_ in {METRIC_ALERT, LOG_ALERT}]
    assert {symbol: type_ for _, symbol, type_ in rules} == EXPECTED_RULES
    assert {file for file, _, _ in rules} == {ALERTS}


def test_alerts_module_is_wired_from_main(model: Model) -> None:
    module = model["main.bicep"]["modules"]["alerts"]
    assert module["detail"]["path"] == ALERTS
    params = module["config"]["params"]
    assert render(params["serviceBusNamespaceId"]) == "messaging.outputs.namespaceId"
    assert render(params["applicationInsightsName"]) == "monitoring.outputs.applicationInsightsName"
    scope = _alerts_scope(model)
    assert evaluate("commandQueueName", scope) == SETTINGS["COMMAND_QUEUE_NAME"][0]
    assert evaluate("outcomeTopicName", scope) == SETTINGS["OUTCOME_TOPIC_NAME"][0]


def test_action_group_receivers_are_a_parameter_and_may_be_empty(model: Model) -> None:
    file, symbol, group = only(model, "Microsoft.Insights/actionGroups")
    assert (file, symbol) == (ALERTS, "actionGroup")
    props = group["config"]["properties"]
    assert group["config"]["location"] == "global"
    assert props["enabled"] is True
    assert len(props["groupShortName"]) <= 12
    receivers = props["emailReceivers"]
    loop = receivers["loop_type"]["detail"]
    assert loop["array_name"] == "emailReceivers"
    assert receivers["config"]["emailAddress"] == loop["item_name"]
    assert receivers["config"]["useCommonAlertSchema"] is True
    assert model[ALERTS]["parameters"]["emailReceivers"]["default"] == []
    # main.bicep: a comma-separated parameter, empty by default (an action group without receivers)
    main = model["main.bicep"]
    assert main["parameters"]["alertEmailReceivers"]["type"] == "string"
    assert main["parameters"]["alertEmailReceivers"]["default"] == ""
    bound = main["modules"]["alerts"]["config"]["params"]["emailReceivers"]
    filtered = main["variables"][bound]["value"]["function"]
    assert filtered["type"] == "filter"
    entries = main["variables"][filtered["parameters"]["input_array"]]["value"]
    split = entries["loop_type"]["detail"]["array_name"]["function"]
    assert split["parameters"]["input_string"] == "alertEmailReceivers"


@pytest.mark.parametrize("symbol", sorted(EXPECTED_RULES))
def test_every_alert_rule_notifies_the_action_group(model: Model, symbol: str) -> None:
    props = _props(model, symbol)
    actions = props["actions"]
    if EXPECTED_RULES[symbol] == METRIC_ALERT:
        targets = [render(action["actionGroupId"]) for action in actions]
    else:
        targets = [render(group) for group in actions["actionGroups"]]
    assert targets == ["actionGroup.id"], symbol
    assert props["autoMitigate"] is True, f"{symbol}: resolve by itself when the condition clears"
    assert 0 <= props["severity"] <= 4


@pytest.mark.parametrize("symbol", sorted(s for s, kind in EXPECTED_RULES.items() if kind == LOG_ALERT))
def test_log_alerts_query_application_insights_without_an_identity(model: Model, symbol: str) -> None:
    """Least privilege: the rules query one component in their own resource group and need no identity
    (and so no role assignment of their own)."""
    rule = _rule(model, symbol)["config"]
    assert rule["kind"] == "LogAlert"
    assert "identity" not in rule, f"{symbol}: no managed identity is needed"
    assert [render(scope) for scope in rule["properties"]["scopes"]] == ["applicationInsights.id"]
    resource = model[ALERTS]["resources"]["applicationInsights"]
    assert resource["existing"] is True and resource["type"] == "Microsoft.Insights/components"


def _metric_criterion(model: Model, symbol: str) -> Mapping[str, Any]:
    props = _props(model, symbol)
    assert [render(scope) for scope in props["scopes"]] == ["serviceBusNamespaceId"]
    criteria = props["criteria"]
    assert criteria["'odata.type'"] == "Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria"
    (criterion,) = criteria["allOf"]
    assert criterion["metricNamespace"] == "Microsoft.ServiceBus/namespaces"
    result: Mapping[str, Any] = criterion
    return result


def test_dead_letter_alert_watches_the_command_queue(model: Model) -> None:
    criterion = _metric_criterion(model, "commandDeadLetterAlert")
    assert criterion["metricName"] == "DeadletteredMessages"
    (dimension,) = criterion["dimensions"]
    assert dimension["name"] == "EntityName" and dimension["operator"] == "Include"
    assert evaluate(dimension["values"], _alerts_scope(model)) == [SETTINGS["COMMAND_QUEUE_NAME"][0]]
    assert (criterion["operator"], criterion["threshold"]) == ("GreaterThan", 0), "any dead-lettered message"
    assert criterion["timeAggregation"] == "Maximum"


def test_topic_size_alert_threshold_is_a_parameter(model: Model) -> None:
    criterion = _metric_criterion(model, "topicSizeAlert")
    assert criterion["metricName"] == "Size"
    (dimension,) = criterion["dimensions"]
    assert dimension["name"] == "EntityName"
    assert evaluate(dimension["values"], _alerts_scope(model)) == [SETTINGS["OUTCOME_TOPIC_NAME"][0]]
    assert criterion["operator"] == "GreaterThan"
    threshold = criterion["threshold"]["operator"]
    assert threshold["type"] == "multiply"
    assert threshold["operands"] == {"operand_1": "topicSizeAlertMegabytes", "operand_2": 1048576}
    main = model["main.bicep"]
    default = main["parameters"]["topicSizeAlertMegabytes"]["default"]
    topic = model["app/messaging.bicep"]["resources"]["outcomeTopic"]["config"]["properties"]
    assert 0 < default < topic["maxSizeInMegabytes"], "warn before the topic is full"
    assert main["modules"]["alerts"]["config"]["params"]["topicSizeAlertMegabytes"] == "topicSizeAlertMegabytes"


@pytest.mark.parametrize(
    ("symbol", "parameter"),
    [
        ("retriesExhaustedAlert", "retriesExhaustedAlertThreshold"),
        ("batchErrorsAlert", "batchErrorAlertThreshold"),
        ("functionFailuresAlert", "functionFailureAlertThreshold"),
    ],
)
def test_count_alerts_add_up_item_count_against_a_threshold_parameter(
    model: Model, symbol: str, parameter: str
) -> None:
    (criterion,) = _props(model, symbol)["criteria"]["allOf"]
    # itemCount: a sampled row stands for itemCount rows, so sampling does not lower the count
    assert (criterion["timeAggregation"], criterion["metricMeasureColumn"]) == ("Total", "itemCount")
    assert "itemCount" in _query(model, symbol)
    assert criterion["operator"] == "GreaterThan"
    assert criterion["threshold"] == parameter
    assert model["main.bicep"]["modules"]["alerts"]["config"]["params"][parameter] == parameter
    assert parameter in model["main.bicep"]["parameters"]


def test_retries_exhausted_query(model: Model) -> None:
    query = _query(model, "retriesExhaustedAlert")
    assert COMMAND_EVENT in query
    assert 'tostring(line.deadLetterReason) == "RetriesExhausted"' in query


def test_batch_errors_query_counts_429_and_5xx(model: Model) -> None:
    query = _query(model, "batchErrorsAlert")
    assert COMMAND_EVENT in query
    assert "toint(line.httpStatus)" in query
    assert "httpStatus == 429" in query
    assert "httpStatus >= 500 and httpStatus <= 599" in query


def test_function_failures_query_reads_requests_and_exceptions(model: Model) -> None:
    query = _query(model, "functionFailuresAlert")
    assert "requests | where success == false" in query
    assert "exceptions |" in query


def test_missed_retention_run_alert_fires_when_no_run_line_appeared(model: Model) -> None:
    query = _query(model, "missedRetentionRunAlert")
    assert f'tostring(line.event) == "{RETENTION_RUN_EVENT}"' in query
    assert "ago({maxGapHours}h)" in query
    assert "| where runs == 0" in query, "one row only when the summary is missing"
    variable = model[ALERTS]["variables"]["missedRetentionRunQuery"]["value"]["function"]["parameters"]
    assert variable["old_string"] == "{maxGapHours}"
    assert "retentionRunMaxGapHours" in render(variable["new_string"])
    props = _props(model, "missedRetentionRunAlert")
    (criterion,) = props["criteria"]["allOf"]
    assert (criterion["timeAggregation"], criterion["operator"], criterion["threshold"]) == ("Count", "GreaterThan", 0)
    # the query may look back up to two days, the longest a log alert allows
    assert props["overrideQueryTimeRange"] == "P2D"
    main = model["main.bicep"]["parameters"]["retentionRunMaxGapHours"]
    assert 24 < main["default"] <= 48, "a daily schedule plus slack, within the two-day limit"
    assert {"type": "max_value", "argument": 48} in main["decorators"]
    # 0 disables the rule (it still exists)
    assert render(props["enabled"]) != "" and props["enabled"]["operator"]["type"] == "greater_than"


def test_every_field_a_log_alert_reads_is_logged_by_the_code(model: Model) -> None:
    for symbol, query in _log_queries(model):
        _check_fields(query, symbol)


# --- workbook ----------------------------------------------------------------------------------------------


def test_workbook_is_deployed_from_its_json_file(model: Model) -> None:
    file, _, workbook = only(model, "Microsoft.Insights/workbooks")
    assert file == WORKBOOK
    config = workbook["config"]
    assert config["kind"] == "shared"
    assert config["name"]["function"]["type"] == "guid", "a workbook name is a GUID; deterministic"
    props = config["properties"]
    assert props["category"] == "workbook"
    assert render(props["sourceId"]) == "applicationInsights.id"
    content = model[WORKBOOK]["variables"][props["serializedData"]]["value"]
    rendered = render(content)
    assert "load_text_content(workbook.json)" in rendered
    # every placeholder in the JSON is replaced with this deployment's value
    placeholders = set(_PLACEHOLDER.findall(WORKBOOK_JSON.read_text(encoding="utf-8")))
    assert placeholders == {"__APPLICATION_INSIGHTS_ID__", "__SERVICE_BUS_NAMESPACE_ID__", "__COMMAND_QUEUE_NAME__"}
    for placeholder in placeholders:
        assert placeholder in rendered, f"{placeholder} is not replaced in {WORKBOOK}"
    module = model["main.bicep"]["modules"]["workbook"]
    assert module["detail"]["path"] == WORKBOOK
    assert render(module["config"]["params"]["serviceBusNamespaceId"]) == "messaging.outputs.namespaceId"


def _kql(title_word: str) -> str:
    matches = [
        item["content"]["query"]
        for item in _workbook_items()
        if item["type"] == 3 and title_word.lower() in item["content"]["title"].lower()
    ]
    assert len(matches) == 1, f"expected one workbook query titled with {title_word!r}"
    query: str = matches[0]
    return query


def test_workbook_has_the_operations_views() -> None:
    decisions = _kql("Decisions over time")
    assert COMMAND_EVENT in decisions and "line.decision" in decisions and "bin(timestamp" in decisions
    errors = _kql("Top error codes")
    assert "line.errorCode" in errors and "top 20" in errors
    latency = _kql("latency")
    assert "line.durationMs" in latency and "percentile(" in latency
    runs = _kql("fan-out")
    assert COMMAND_EVENT in runs and "line.fanOut.enqueued" in runs and "line.fanOut.totalSelected" in runs
    (metrics,) = [item["content"] for item in _workbook_items() if item["type"] == 10]
    names = {metric["metric"] for metric in metrics["metrics"]}
    assert "microsoft.servicebus/namespaces--DeadletteredMessages" in names
    assert metrics["resourceIds"] == ["__SERVICE_BUS_NAMESPACE_ID__"]
    assert metrics["filters"] == [{"id": "1", "key": "EntityName", "operator": 0, "values": ["__COMMAND_QUEUE_NAME__"]}]


def test_workbook_queries_read_application_insights_and_logged_fields_only() -> None:
    for item in _workbook_items():
        if item["type"] != 3:
            continue
        content = item["content"]
        assert content["crossComponentResources"] == ["__APPLICATION_INSIGHTS_ID__"], item["name"]
        assert content["timeContextFromParameter"] == "TimeRange", item["name"]
        _check_fields(content["query"], f"workbook item {item['name']}")
        if "summarize" in content["query"] and "count()" not in content["query"]:
            assert "sum(itemCount)" in content["query"] or "percentile(" in content["query"], item["name"]
