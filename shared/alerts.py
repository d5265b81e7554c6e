"""Alert remediation: turn an Azure Monitor common-schema alert into lifecycle commands (DESIGN.md section 6).

The alert rule says what to do in its custom properties (``batchAction``, ``batchAccount``, ``batchJobId``,
``batchTaskId``, ``batchReason``). Log search alerts may name the targets per firing, in dimensions or in
the included search results, through columns called ``jobId`` / ``taskId`` (any letter case). Each
command goes through the same contract check as a queue message, and its id is derived from the alert
id and the target, so Azure Monitor's retries of one notification enqueue nothing new.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from shared.config import Settings
from shared.contract import Command, InvalidCommand, parse_command, stable_id
from shared.messages import Outbound, Producer

log = logging.getLogger("batch_lifecycle")

SCHEMA_ID: Final = "azureMonitorCommonAlertSchema"
MAX_ALERT_BYTES: Final = 256 * 1024  # the documented upper size of a common-schema alert
CONDITIONS: Final = ("Fired", "Resolved")
ACTION_PROPERTY: Final = "batchAction"
# custom property -> command field; together with ACTION_PROPERTY these are the documented names.
PROPERTY_FIELDS: Final = {
    "batchAccount": "account",
    "batchJobId": "jobId",
    "batchTaskId": "taskId",
    "batchReason": "reason",
}
# Dimension / search-result column names (compared case-insensitively) that name a target.
TARGET_COLUMNS: Final = {"jobid": "jobId", "taskid": "taskId"}
MAX_REQUESTED_BY: Final = 256


class InvalidAlert(ValueError):
    """The payload is not a valid common-schema alert (answered 400)."""


class IgnoredAlert(Exception):
    """A valid alert that asks for nothing this app does (answered 200)."""


@dataclass(frozen=True)
class AlertResult:
    status: int
    reason: str
    alert_id: str | None = None
    commands: tuple[Command, ...] = ()
    rejected: tuple[str, ...] = field(default=())

    def messages(self) -> list[Outbound]:
        return [command.to_message() for command in self.commands]

    def body(self) -> dict[str, Any]:
        """The HTTP answer's JSON body."""
        answer: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if self.alert_id is not None:
            answer["alertId"] = self.alert_id
        if self.status == 202:
            answer["commands"] = [
                {
                    "commandId": c.command_id,
                    "action": c.action,
                    "account": c.account,
                    "jobId": c.job_id,
                    "taskId": c.task_id,
                }
                for c in self.commands
            ]
        if self.rejected:
            answer["rejected"] = list(self.rejected)
        return answer


def _decode(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_ALERT_BYTES:
        raise InvalidAlert(f"payload is {len(raw)} bytes; a common-schema alert is at most {MAX_ALERT_BYTES} bytes")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidAlert("payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidAlert(f"payload is not valid JSON ({exc.msg} at position {exc.pos})") from None
    if not isinstance(value, dict):
        raise InvalidAlert(f"payload must be a JSON object, not {type(value).__name__}")
    return value


def _object(container: Mapping[str, Any], name: str, where: str, nullable: bool = False) -> dict[str, Any]:
    value = container.get(name)
    if value is None and nullable:
        return {}
    if not isinstance(value, dict):
        raise InvalidAlert(f"{where}{name} must be a JSON object")
    return value


@dataclass(frozen=True)
class _Alert:
    alert_id: str
    rule: str
    condition: str
    context: dict[str, Any]
    properties: dict[str, Any]


def _read(raw: bytes) -> _Alert:
    payload = _decode(raw)
    schema = payload.get("schemaId")
    if schema != SCHEMA_ID:
        raise InvalidAlert(
            f"schemaId is {str(schema)[:60]!r}; expected {SCHEMA_ID!r} "
            "(turn on the common alert schema for this action)"
        )
    data = _object(payload, "data", "")
    essentials = _object(data, "essentials", "data.")
    alert_id = essentials.get("alertId")
    if not isinstance(alert_id, str) or not alert_id:
        raise InvalidAlert("data.essentials.alertId must be a non-empty string")
    condition = essentials.get("monitorCondition")
    if condition not in CONDITIONS:
        raise InvalidAlert(f"data.essentials.monitorCondition must be one of {list(CONDITIONS)}")
    rule = essentials.get("alertRule")
    return _Alert(
        alert_id=alert_id,
        rule=rule if isinstance(rule, str) else "",
        condition=condition,
        context=_object(data, "alertContext", "data.", nullable=True),
        # "If custom properties aren't set in the alert rule, the field is null."
        properties=_object(data, "customProperties", "data.", nullable=True),
    )


def _targets_in(named: Iterator[Mapping[object, Any]]) -> Iterator[dict[str, str]]:
    """The jobId / taskId values of each dimension set or result row that names one."""
    for values in named:
        found = {
            TARGET_COLUMNS[name.lower()]: str(value)
            for name, value in values.items()
            if isinstance(name, str) and name.lower() in TARGET_COLUMNS and value not in (None, "")
        }
        if found:
            yield found


def _dimension_sets(context: Mapping[str, Any]) -> Iterator[Mapping[object, Any]]:
    """Metric and log search v2 alerts: ``condition.allOf[].dimensions``; log search v1: ``Dimensions``."""
    condition = context.get("condition")
    clauses = condition.get("allOf") if isinstance(condition, dict) else None
    groups = [clause.get("dimensions") for clause in clauses or () if isinstance(clause, dict)]
    groups.append(context.get("Dimensions"))
    for group in groups:
        if isinstance(group, list):
            yield {d.get("name"): d.get("value") for d in group if isinstance(d, dict)}


def _result_rows(context: Mapping[str, Any]) -> Iterator[Mapping[object, Any]]:
    """Log search v1 with included search results: ``SearchResults.tables[].columns/rows``."""
    results = context.get("SearchResults")
    tables = results.get("tables") if isinstance(results, dict) else None
    for table in tables or ():
        if not isinstance(table, dict):
            continue
        names: list[object] = [c.get("name") if isinstance(c, dict) else None for c in table.get("columns") or ()]
        for row in table.get("rows") or ():
            if isinstance(row, list):
                yield dict(zip(names, row, strict=False))


def _command_fields(properties: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, str]:
    """The named custom properties as command fields; an empty or null property counts as unset."""
    return {PROPERTY_FIELDS[name]: str(properties[name]) for name in names if properties.get(name) not in (None, "")}


def _targets(alert: _Alert) -> list[dict[str, str]]:
    """Distinct targets in first-seen order; the rule's own batchJobId / batchTaskId win over per-firing values."""
    fixed = _command_fields(alert.properties, ("batchJobId", "batchTaskId"))
    named = [*_targets_in(_dimension_sets(alert.context)), *_targets_in(_result_rows(alert.context))]
    targets = [{**found, **fixed} for found in named] or [fixed]
    distinct: dict[tuple[str | None, str | None], dict[str, str]] = {}
    for target in targets:
        distinct.setdefault((target.get("jobId"), target.get("taskId")), target)
    return list(distinct.values())


def _command_body(alert: _Alert, action: str, target: Mapping[str, str]) -> bytes:
    options = _command_fields(alert.properties, ("batchAccount", "batchReason"))
    identity = [alert.alert_id, action, options.get("account", ""), target.get("jobId", ""), target.get("taskId", "")]
    body = {
        "action": action,
        **target,
        **options,
        "commandId": stable_id("alert", *identity),
        "requestedBy": f"alert:{alert.rule}"[:MAX_REQUESTED_BY],
    }
    return json.dumps(body).encode("utf-8")


def _commands(
    alert: _Alert, action: str, accounts: Collection[str], default_account: str
) -> tuple[list[Command], list[str]]:
    commands: list[Command] = []
    rejected: list[str] = []
    for target in _targets(alert):
        try:
            commands.append(parse_command(_command_body(alert, action, target), None, accounts, default_account))
        except InvalidCommand as exc:
            rejected.append(f"{action} {json.dumps(target, sort_keys=True)}: {exc}")
    return commands, rejected


def parse_alert(
    raw: bytes, allowed_actions: Collection[str], accounts: Collection[str], default_account: str
) -> AlertResult:
    """Decide what an alert asks for: 202 with commands, 200 with why nothing, 400 with what is wrong."""
    try:
        alert = _read(raw)
    except InvalidAlert as exc:
        return AlertResult(400, str(exc))
    try:
        action = _requested_action(alert, allowed_actions)
    except IgnoredAlert as exc:
        return AlertResult(200, str(exc), alert.alert_id)
    commands, rejected = _commands(alert, action, accounts, default_account)
    if not commands:
        reason = "the alert's Batch properties make no valid command: " + "; ".join(rejected)
        return AlertResult(400, reason, alert.alert_id, (), tuple(rejected))
    reason = f"{len(commands)} {action} command(s) enqueued"
    return AlertResult(202, reason, alert.alert_id, tuple(commands), tuple(rejected))


def _requested_action(alert: _Alert, allowed_actions: Collection[str]) -> str:
    if alert.condition != "Fired":
        raise IgnoredAlert(f"monitorCondition is {alert.condition}; only Fired alerts trigger actions")
    action = alert.properties.get(ACTION_PROPERTY)
    if action is None:
        raise IgnoredAlert(f"the alert rule has no {ACTION_PROPERTY} custom property; nothing to do")
    if action not in allowed_actions:
        raise IgnoredAlert(
            f"{ACTION_PROPERTY} {str(action)[:40]!r} is not allowed; "
            f"ALERT_ALLOWED_ACTIONS permits {sorted(allowed_actions)}"
        )
    return str(action)


def handle_alert(raw: bytes, settings: Settings, bus: Producer) -> AlertResult:
    """Parse, enqueue what the alert asks for, and log one line; a failed send answers 503."""
    result = parse_alert(raw, settings.alert_actions, settings.accounts, settings.default_account)
    if result.commands:
        try:
            bus.enqueue(result.messages())
        except Exception as exc:
            # Action groups retry 503 (not 500); the ids are deterministic, so a retry adds no duplicates.
            result = AlertResult(503, f"could not enqueue the commands ({type(exc).__name__}); retry", result.alert_id)
    log.info(
        "%s",
        json.dumps(
            {
                "event": "alertReceived",
                "status": result.status,
                "reason": result.reason,
                "alertId": result.alert_id,
                "commandIds": [c.command_id for c in result.commands],
                "rejected": list(result.rejected),
            }
        ),
    )
    return result
