"""Alert remediation: turn an Azure Monitor common-schema alert into commands (docs/design.md, "Retention and alerts").

The alert rule says what to do in its custom properties (``batchAction``, ``batchAccount``, ``batchJobId``,
``batchTaskId``, ``batchReason``), found in ``data.customProperties`` and, for metric and log search v2
alerts, in ``data.alertContext.properties`` (``customProperties`` wins when both set one). Log search
alerts may name the targets per firing, in dimensions or in the included search results, through columns
called ``jobId`` / ``taskId`` (any letter case); a log search v1 *metric measurement* alert acts only on
the result rows of the dimension combination that fired. Each command goes through the same contract
check as a queue message, and its id is derived from the alert id and the target, so Azure Monitor's
retries of one notification enqueue nothing new. At most ``ALERT_MAX_COMMANDS`` commands per alert.

Instead of one target, an alert may name a configured fleet policy to run now (``batchPolicy``): it enqueues
that policy's selector command, with an id derived from the alert id (``shared/policies.py``).

Every raw JSON value is read through ``_Node`` (the one place that checks JSON types): a value of the
wrong type is a 400 naming its path, never an exception; reasons describe foreign values by their JSON
type or a short quoted prefix, never by converting them to text.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping
from typing import Any, Final, NamedTuple

from shared.config import Settings
from shared.contract import Command, InvalidCommand, Selection, parse_command, stable_id
from shared.deadline import DeadlineExceeded
from shared.messages import Outbound, Producer
from shared.policies import alert_run_id, by_name

log = logging.getLogger("batch_lifecycle")

SCHEMA_ID: Final = "azureMonitorCommonAlertSchema"
MAX_ALERT_BYTES: Final = 256 * 1024  # the documented upper size of a common-schema alert
CONDITIONS: Final = ("Fired", "Resolved")
ACTION_PROPERTY: Final = "batchAction"
POLICY_PROPERTY: Final = "batchPolicy"
MAX_LISTED_POLICIES: Final = 20
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
MAX_LISTED_REJECTIONS: Final = 20  # the answer and the log line list this many rejected targets, then a count
METRIC_MEASUREMENT: Final = "metric measurement"  # log search v1 AlertType, compared case-insensitively
MAX_COMMANDS_SETTING: Final = "ALERT_MAX_COMMANDS"


class InvalidAlert(ValueError):
    """The payload is not a valid common-schema alert (answered 400)."""


class IgnoredAlert(Exception):
    """A valid alert that asks for nothing this app does (answered 200)."""


class AlertResult(NamedTuple):
    status: int
    reason: str
    alert_id: str | None = None
    commands: tuple[Command, ...] = ()
    rejected: tuple[str, ...] = ()
    selections: tuple[Selection, ...] = ()  # a policy run (batchPolicy)
    policy: str | None = None

    def messages(self) -> list[Outbound]:
        return [command.to_message() for command in self.commands] + [s.to_message() for s in self.selections]

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
            ] + [
                {
                    "commandId": s.command_id,
                    "action": s.action,
                    "account": s.account,
                    "policy": self.policy,
                    "dryRun": s.dry_run,
                }
                for s in self.selections
            ]
        if self.rejected:
            answer["rejected"] = list(self.rejected)
        return answer


# --- The reading layer: the only code that looks at the types of raw JSON values. ---------------------------


class _Absent:
    """A member the payload does not have (told apart from JSON null in reasons)."""


_ABSENT: Final = _Absent()


def _kind(value: object) -> str:
    """A JSON value's type as a reason shows it; never its content, which may be huge or deeply nested."""
    if isinstance(value, _Absent):
        return "missing"
    if value is None or isinstance(value, bool):
        return json.dumps(value)  # null, true, false
    kinds = {int: "a number", float: "a number", str: "a string", list: "an array"}
    return kinds.get(type(value), "an object")


def _shown(value: object) -> str:
    """A string quoted and cut to 60 characters; any other value by its JSON type."""
    return repr(value[:60]) if isinstance(value, str) else _kind(value)


def _is_text(value: str) -> bool:
    """JSON may carry lone surrogates (``"\\ud800"``); they are not text and cannot be encoded."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _decode(raw: bytes) -> _Node:
    if len(raw) > MAX_ALERT_BYTES:
        raise InvalidAlert(f"payload is {len(raw)} bytes; a common-schema alert is at most {MAX_ALERT_BYTES} bytes")
    try:
        value = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidAlert("payload is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise InvalidAlert(f"payload is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except RecursionError:  # e.g. 1,100 nested "[": far deeper than any alert
        raise InvalidAlert("payload nests JSON too deeply; a common-schema alert is a few levels deep") from None
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits (sys.set_int_max_str_digits)
        raise InvalidAlert(f"payload is not usable JSON ({str(exc)[:80]})") from None
    if not isinstance(value, dict):
        raise InvalidAlert(f"payload must be a JSON object, not {_kind(value)}")
    return _Node(value, "")


class _Node:
    """One value of the payload and its path (``data.alertContext.Dimensions[0].name``).

    Callers only get dicts, lists of nodes and strings out of it, or an InvalidAlert that names the path,
    the type it must have and the type it has. JSON null counts as absent wherever a value is optional.
    """

    __slots__ = ("path", "value")

    def __init__(self, value: object, path: str) -> None:
        self.value = value
        self.path = path

    def __getitem__(self, name: str) -> _Node:
        """A member (absent unless this is an object: call ``obj()`` first to insist on one)."""
        members = self.value if isinstance(self.value, dict) else {}
        return _Node(members.get(name, _ABSENT), f"{self.path}.{name}" if self.path else name)

    def has(self, name: str) -> bool:
        return isinstance(self.value, dict) and name in self.value

    @property
    def absent(self) -> bool:
        return self.value is None or isinstance(self.value, _Absent)

    def shown(self) -> str:
        """``missing``, a string quoted and cut to 60 characters, or the JSON type of anything else."""
        return _shown(self.value)

    def wrong(self, expected: str) -> InvalidAlert:
        return InvalidAlert(f"{self.path} must be {expected} (it is {self.shown()})")

    def choice(self, options: Collection[str]) -> str:
        """A string that is one of ``options``."""
        if isinstance(self.value, str) and self.value in options:
            return self.value
        raise self.wrong(f"one of {list(options)}")

    def obj(self, optional: bool = False) -> _Node:
        """This node, which must be a JSON object; an optional absent one reads as ``{}``."""
        if isinstance(self.value, dict):
            return self
        if optional and self.absent:
            return _Node({}, self.path)
        raise self.wrong("a JSON object")

    def items(self, optional: bool = True) -> list[_Node]:
        """The elements of a JSON array; an optional absent one reads as ``[]``."""
        if isinstance(self.value, list):
            return [_Node(item, f"{self.path}[{index}]") for index, item in enumerate(self.value)]
        if optional and self.absent:
            return []
        raise self.wrong("a JSON array")

    def text(self, optional: bool = True) -> str | None:
        """A string (None when optional and absent)."""
        if isinstance(self.value, str):
            if not _is_text(self.value):
                raise InvalidAlert(f"{self.path} is not valid Unicode text")
            return self.value
        if optional and self.absent:
            return None
        raise self.wrong("a string")

    def required_text(self) -> str:
        """A non-empty string."""
        value = self.text() if isinstance(self.value, str) else None
        if not value:
            raise self.wrong("a non-empty string")
        return value

    def flag(self) -> bool | None:
        """``true``/``false`` or the strings ``"True"``/``"False"`` (any case); anything else reads as None."""
        if isinstance(self.value, bool):
            return self.value
        if isinstance(self.value, str) and self.value.strip().lower() in ("true", "false"):
            return self.value.strip().lower() == "true"
        return None

    def target(self) -> tuple[str | None, str | None]:
        """A dimension value or result cell as a job/task id: (id, None), (None, problem) or (None, None) if unset."""
        if self.absent or self.value == "":
            return None, None
        if not isinstance(self.value, str):
            return None, f"is {_kind(self.value)}, not a string (have the query return ids as strings: tostring())"
        if not _is_text(self.value):
            return None, "is not valid Unicode text"
        return self.value, None

    def same_text(self, other: _Node) -> bool:
        """Both are the same string (or both null): how a result cell is matched to a dimension value."""
        if isinstance(self.value, str) and isinstance(other.value, str):
            return self.value == other.value
        return self.value is None and other.value is None


class _Named(NamedTuple):
    """A dimension combination or a search-result row: (name, value) pairs, and where it is in the payload."""

    where: str
    pairs: tuple[tuple[str, _Node], ...]

    def cell(self, name: str) -> _Node | None:
        return next((value for key, value in self.pairs if key == name), None)

    def shown(self) -> str:
        return _joined([f"{name}={value.shown()}" for name, value in self.pairs], ", ")


def _joined(parts: list[str], separator: str, most: int = 5) -> str:
    """At most ``most`` parts, then how many more: a reason stays short whatever the payload holds."""
    shown = parts[:most] + ([f"... {len(parts) - most} more"] if len(parts) > most else [])
    return separator.join(shown)


def _dimensions(node: _Node) -> _Named:
    """``[{"name": ..., "value": ...}, ...]`` (null or absent: none)."""
    pairs = []
    for entry in node.items():
        dimension = entry.obj()
        pairs.append((dimension["name"].text(optional=False) or "", dimension["value"]))
    return _Named(node.path, tuple(pairs))


def _result_rows(results: _Node) -> list[_Named]:
    """``SearchResults.tables[].columns[].name`` / ``rows[][]``: each row as (column name, cell) pairs."""
    rows: list[_Named] = []
    for table_node in results.obj(optional=True)["tables"].items():
        table = table_node.obj()
        names = [column.obj()["name"].text(optional=False) or "" for column in table["columns"].items()]
        for row in table["rows"].items():
            rows.append(_Named(row.path, tuple(zip(names, row.items(optional=False), strict=False))))
    return rows


def _batch_properties(node: _Node) -> dict[str, str]:
    """The ``batch…`` custom properties of one object; null and "" are unset, any other non-string is a 400."""
    found: dict[str, str] = {}
    for name in (ACTION_PROPERTY, POLICY_PROPERTY, *PROPERTY_FIELDS):
        value = node[name].text()
        if value:
            found[name] = value
    return found


# --- The alert as this app reads it. -------------------------------------------------------------------------


class _Alert(NamedTuple):
    alert_id: str
    rule: str
    condition: str
    context: _Node
    properties: dict[str, str]


def _read(raw: bytes) -> _Alert:
    payload = _decode(raw)
    schema = payload["schemaId"]
    if schema.value != SCHEMA_ID:
        raise InvalidAlert(
            f"schemaId is {schema.shown()}; expected {SCHEMA_ID!r} (turn on the common alert schema for this action)"
        )
    data = payload["data"].obj()
    essentials = data["essentials"].obj()
    alert_id = essentials["alertId"].required_text()
    condition = essentials["monitorCondition"].choice(CONDITIONS)
    context = data["alertContext"].obj(optional=True)
    # Metric and log search v2 alerts (the shapes with condition/conditionType) may carry the rule's custom
    # properties in alertContext.properties; in other alert types (activity log, service health) that
    # object describes the event instead, so it is not read there.
    in_context: dict[str, str] = {}
    if context.has("conditionType") or context.has("condition"):
        in_context = _batch_properties(context["properties"].obj(optional=True))
    # "If custom properties aren't set in the alert rule, the field is null."
    custom = _batch_properties(data["customProperties"].obj(optional=True))
    return _Alert(
        alert_id=alert_id,
        rule=essentials["alertRule"].text() or "",
        condition=condition,
        context=context,
        properties={**in_context, **custom},  # customProperties wins, property by property
    )


# --- Targets and commands. ----------------------------------------------------------------------------------


class _Targets(NamedTuple):
    targets: list[dict[str, str]]
    rejected: list[str]
    notes: list[str]


def _per_firing_sets(context: _Node) -> tuple[list[_Named], list[str]]:
    """The dimension combinations and result rows that may name targets, and notes on what was left out.

    Metric / log search v2: ``condition.allOf[].dimensions``. Log search v1: ``Dimensions`` and the rows of
    ``SearchResults``; in a *metric measurement* alert the rows are the complete results of every
    combination, so only the rows whose cells equal the fired ``Dimensions`` values count.
    """
    sets = [
        _dimensions(clause.obj()["dimensions"]) for clause in context["condition"].obj(optional=True)["allOf"].items()
    ]
    fired = _dimensions(context["Dimensions"])
    sets.append(fired)
    rows = _result_rows(context["SearchResults"])
    notes: list[str] = []
    alert_type = context["AlertType"].text() or ""
    if alert_type.strip().lower() == METRIC_MEASUREMENT:
        matching = [row for row in rows if all(_cell_matches(row, name, value) for name, value in fired.pairs)]
        if rows and not matching:
            notes.append(
                f"none of the {len(rows)} search-result rows belongs to the dimension combination that fired "
                f"({fired.shown() or 'no dimensions'})"
            )
        rows = matching
    if context["IncludedSearchResults"].flag() is False:
        notes.append(
            "Azure left the search results out of this alert (IncludedSearchResults is False: the rule does not "
            "include them, or they would make the alert larger than 256 KB); turn on 'Include search results' "
            "in the rule, or split it by JobId / TaskId dimensions, or set batchJobId / batchTaskId"
        )
    return [*sets, *rows], notes


def _cell_matches(row: _Named, name: str, value: _Node) -> bool:
    cell = row.cell(name)
    return cell is not None and cell.same_text(value)


def _named_target(named: _Named, fixed: Collection[str]) -> tuple[dict[str, str], list[str]]:
    """The jobId / taskId a set names (fields the rule fixes are not read), and what is wrong with them."""
    found: dict[str, str] = {}
    problems: list[str] = []
    for name, cell in named.pairs:
        target_field = TARGET_COLUMNS.get(name.lower())
        if target_field is None or target_field in fixed:
            continue
        value, problem = cell.target()
        if problem is not None:
            problems.append(f"{name} {problem}")
        elif value is not None and found.setdefault(target_field, value) != value:
            problems.append(
                f"{name} {value[:64]!r} contradicts {target_field} {found[target_field][:64]!r} of another column"
            )
    return found, problems


def _targets(alert: _Alert, action: str) -> _Targets:
    """Distinct targets in first-seen order; the rule's own batchJobId / batchTaskId win over per-firing values."""
    fixed = {
        PROPERTY_FIELDS[name]: alert.properties[name]
        for name in ("batchJobId", "batchTaskId")
        if name in alert.properties
    }
    sets, notes = _per_firing_sets(alert.context)
    named: list[dict[str, str]] = []
    rejected: list[str] = []
    for one in sets:
        found, problems = _named_target(one, fixed)
        if problems:
            rejected.append(f"{action} at {one.where}: {_joined(problems, '; ')}")
        elif found:
            named.append({**found, **fixed})
    if named or rejected:
        notes = []  # the alert did name targets; the notes only explain an alert that names none
    distinct: dict[tuple[str | None, str | None], dict[str, str]] = {}
    for target in named or ([] if rejected else [fixed]):
        distinct.setdefault((target.get("jobId"), target.get("taskId")), target)
    return _Targets(list(distinct.values()), rejected, notes)


def _command_body(alert: _Alert, action: str, target: Mapping[str, str]) -> bytes:
    options = {
        PROPERTY_FIELDS[name]: alert.properties[name]
        for name in ("batchAccount", "batchReason")
        if name in alert.properties
    }
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
) -> tuple[list[Command], list[str], list[str]]:
    found = _targets(alert, action)
    commands: list[Command] = []
    rejected = found.rejected
    for target in found.targets:
        try:
            commands.append(parse_command(_command_body(alert, action, target), None, accounts, default_account))
        except InvalidCommand as exc:
            rejected.append(f"{action} {json.dumps(target, sort_keys=True)}: {exc}")
    return commands, rejected, found.notes


def _listed(rejected: list[str]) -> tuple[str, ...]:
    if len(rejected) <= MAX_LISTED_REJECTIONS:
        return tuple(rejected)
    return (*rejected[:MAX_LISTED_REJECTIONS], f"... and {len(rejected) - MAX_LISTED_REJECTIONS} more")


def parse_alert(raw: bytes, settings: Settings) -> AlertResult:
    """Decide what an alert asks for: 202 with commands, 200 with why nothing, 400 with what is wrong."""
    try:
        alert = _read(raw)
    except InvalidAlert as exc:
        return AlertResult(400, str(exc))
    try:
        if alert.condition == "Fired" and POLICY_PROPERTY in alert.properties:
            return _policy_run(alert, settings)
        action = _requested_action(alert, settings.alert_actions)
        commands, rejected, notes = _commands(alert, action, settings.accounts, settings.default_account)
    except IgnoredAlert as exc:
        return AlertResult(200, str(exc), alert.alert_id)
    except InvalidAlert as exc:
        return AlertResult(400, str(exc), alert.alert_id)
    return _command_result(alert, action, (commands, rejected, notes), settings.alert_max_commands)


def _command_result(
    alert: _Alert, action: str, found: tuple[list[Command], list[str], list[str]], max_commands: int
) -> AlertResult:
    commands, rejected, notes = found
    listed = _listed(rejected)
    if not commands:
        reason = "the alert makes no valid command: " + "; ".join(listed)
        if notes:
            reason += " — " + "; ".join(notes)
        return AlertResult(400, reason, alert.alert_id, (), listed)
    if len(commands) > max_commands:
        reason = (
            f"the alert would make {len(commands)} {action} commands; {MAX_COMMANDS_SETTING} allows at most "
            f"{max_commands} per alert, so none were enqueued (narrow the alert rule or raise {MAX_COMMANDS_SETTING})"
        )
        return AlertResult(400, reason, alert.alert_id, (), listed)
    reason = f"{len(commands)} {action} command(s) enqueued"
    return AlertResult(202, reason, alert.alert_id, tuple(commands), listed)


def _policy_run(alert: _Alert, settings: Settings) -> AlertResult:
    """``batchPolicy``: run a configured policy now, under an id derived from the alert id."""
    name = alert.properties[POLICY_PROPERTY]
    others = [prop for prop in (ACTION_PROPERTY, *PROPERTY_FIELDS) if prop in alert.properties]
    if others:
        raise InvalidAlert(
            f"{POLICY_PROPERTY} names a whole policy (its action, account and selectors); remove {others} from the "
            "alert rule's custom properties"
        )
    policies = by_name(settings)
    policy = policies.get(name)
    if policy is None:
        shown = _joined([repr(known) for known in sorted(policies)], ", ", MAX_LISTED_POLICIES) or "none"
        raise InvalidAlert(
            f"{POLICY_PROPERTY} {name[:60]!r} is not a configured policy (POLICIES or the retention shorthand); "
            f"configured policies: {shown}"
        )
    requested_by = f"alert:{alert.rule}"[:MAX_REQUESTED_BY]
    try:
        selection = policy.selection(settings, alert_run_id(policy, alert.alert_id), requested_by)
    except InvalidCommand as exc:
        raise InvalidAlert(f"policy {name!r} cannot run: {exc}") from None
    mode = "dry run" if selection.dry_run else "acting"
    reason = f"policy {name!r} enqueued ({mode}): {selection.action} selector {selection.command_id}"
    return AlertResult(202, reason, alert.alert_id, selections=(selection,), policy=name)


def _requested_action(alert: _Alert, allowed_actions: Collection[str]) -> str:
    if alert.condition != "Fired":
        raise IgnoredAlert(f"monitorCondition is {alert.condition}; only Fired alerts trigger actions")
    action = alert.properties.get(ACTION_PROPERTY)
    if action is None:
        raise IgnoredAlert(f"the alert rule has no {ACTION_PROPERTY} custom property; nothing to do")
    if action not in allowed_actions:
        raise IgnoredAlert(
            f"{ACTION_PROPERTY} {action[:40]!r} is not allowed; ALERT_ALLOWED_ACTIONS permits {sorted(allowed_actions)}"
        )
    return action


def _enqueue(result: AlertResult, bus: Producer) -> AlertResult:
    """Send the commands; a failed send answers 503 (action groups retry it; the ids make the retry harmless)."""
    if not result.commands and not result.selections:
        return result
    try:
        bus.enqueue(result.messages())
    except DeadlineExceeded as exc:  # our own message: which entity and the limit, nothing secret
        return AlertResult(503, f"could not enqueue the commands: Service Bus {exc}; retry", result.alert_id)
    except Exception as exc:  # the SDK's text may name endpoints; the type is enough to act on
        return AlertResult(503, f"could not enqueue the commands ({type(exc).__name__}); retry", result.alert_id)
    return result


def handle_alert(raw: bytes, settings: Settings, bus: Producer) -> AlertResult:
    """Parse, enqueue what the alert asks for, and log one line."""
    result = _enqueue(parse_alert(raw, settings), bus)
    log.info(
        "%s",
        json.dumps(
            {
                "event": "alertReceived",
                "status": result.status,
                "reason": result.reason,
                "alertId": result.alert_id,
                "commandIds": [c.command_id for c in result.commands] + [s.command_id for s in result.selections],
                "policy": result.policy,
                "rejected": list(result.rejected),
            }
        ),
    )
    return result
