"""Fleet policies: named selector commands, run by a timer, named by an alert, or built from ``RETENTION_*``.

A policy is a selector command without an id (README, "Fleet operations"). ``POLICIES`` is a JSON array of
them; the ``RETENTION_*`` settings are a shorthand for one more per account (``shared/retention.py``). Every
policy is checked by the command contract when the settings load, so a malformed one stops start-up with
one line that names it and the problem.

A run enqueues one selector command per policy with the commandId ``policy:<name>:<run slot>``, where the
slot is the schedule occurrence the run belongs to (``shared/ncrontab.py``): two runs of one occurrence (a
past-due rerun, an overlap) make the same message ids, so the queue keeps one, and the selector's own ids
(``<commandId>/<jobId>/<taskId>``) keep every target to one command. Policies start in dry run unless
``"dryRun": false`` is given.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from shared import ncrontab, retention
from shared.config import ConfigError, FleetSettings
from shared.contract import InvalidCommand, Selection, parse_message
from shared.messages import Outbound, Producer
from shared.selectors import Scope

if TYPE_CHECKING:
    from shared.config import Settings

log = logging.getLogger("batch_lifecycle")

POLICY_FIELDS: Final = ("name", "action", "select", "jobSelect", "limit", "dryRun", "account")
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,40}")
SOURCE_POLICIES: Final = "POLICIES"
SOURCE_RETENTION: Final = "RETENTION"
_VALIDATION_ID: Final = "policy:validation"
# The one log line per timer run (the missed-run alert and the workbook read it; tests/infra checks the fields).
RETENTION_RUN_EVENT: Final = "retentionEnqueued"
POLICIES_RUN_EVENT: Final = "policiesEnqueued"
RUN_LINE_FIELDS: Final = ("event", "slot", "commandIds", "dryRun")


class FleetPolicy(NamedTuple):
    name: str
    source: str  # SOURCE_POLICIES or SOURCE_RETENTION
    fields: dict[str, Any]  # the selector command, without commandId

    @property
    def action(self) -> str:
        return str(self.fields["action"])

    @property
    def dry_run(self) -> bool:
        return bool(self.fields.get("dryRun"))

    def body(self, command_id: str, requested_by: str) -> bytes:
        return json.dumps({**self.fields, "commandId": command_id, "requestedBy": requested_by}).encode("utf-8")

    def message(self, command_id: str, requested_by: str | None = None) -> Outbound:
        """The selector command of one run; ``message_id`` = commandId, so duplicate detection keys on it."""
        return Outbound(
            body=self.body(command_id, requested_by or f"policy:{self.name}"),
            message_id=command_id,
            subject=self.action,
            application_properties={"commandId": command_id, "policy": self.name},
            correlation_id=command_id,
        )

    def selection(self, settings: Settings, command_id: str, requested_by: str) -> Selection:
        """The run's command as the queue function will read it; InvalidCommand when it would be refused."""
        found = parse_message(
            self.body(command_id, requested_by), None, settings.accounts, settings.default_account, settings.fleet
        )
        if not isinstance(found, Selection):  # load_policies made sure every policy is a selector command
            raise InvalidCommand([f"policy {self.name!r} is not a selector command"])
        return found


def run_id(policy: FleetPolicy, slot: str) -> str:
    """``policy:<name>:<slot>`` (at most 7 + 40 + 1 + 16 characters)."""
    return f"policy:{policy.name}:{slot}"


def alert_run_id(policy: FleetPolicy, alert_id: str) -> str:
    """The id of a run an alert asked for: Azure Monitor's retries of one notification make the same id."""
    digest = hashlib.sha256(alert_id.encode("utf-8")).hexdigest()[:24]
    return f"policy:{policy.name}:alert-{digest}"


def load_policies(raw: str, settings: Settings) -> tuple[FleetPolicy, ...]:
    """``POLICIES`` plus the retention shorthand, each checked by the command contract; ConfigError otherwise."""
    entries = _entries(raw)
    policies: list[FleetPolicy] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        policy = _policy(entry, index, settings)
        if policy.name in names:
            raise ConfigError(f"setting POLICIES: policy {policy.name!r} is defined twice; names must be unique")
        names.add(policy.name)
        policies.append(policy)
    for account in settings.retention.accounts:
        fields = retention.policy_fields(settings.retention, account)
        name = str(fields.pop("name"))
        if name in names:
            raise ConfigError(
                f"setting POLICIES: policy {name!r} has the name of the retention policy of account {account!r}; "
                "rename it"
            )
        # Retention loads whatever the scope says; with FLEET_SCOPE_PREFIXES empty each run is skipped with a
        # retentionSkipped line (_enqueue), so only its shape is checked here.
        fleet = settings.fleet
        if fleet.scope.empty:
            fleet = FleetSettings(Scope(everything=True), fleet.default_limit, fleet.max_limit)
        problems = _problems(fields, settings, fleet)
        if problems:
            raise ConfigError(f"settings RETENTION_*: retention policy {name!r} (account {account!r}): {problems}")
        names.add(name)
        policies.append(FleetPolicy(name, SOURCE_RETENTION, fields))
    return tuple(policies)


def _entries(raw: str) -> list[object]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"setting POLICIES is not valid JSON ({exc.msg} at position {exc.pos})") from None
    except (RecursionError, ValueError):
        raise ConfigError("setting POLICIES is not usable JSON") from None
    if not isinstance(value, list):
        raise ConfigError('setting POLICIES must be a JSON array of policies, e.g. [{"name": ..., ...}]')
    return value


def _policy(entry: object, index: int, settings: Settings) -> FleetPolicy:
    if not isinstance(entry, dict):
        raise ConfigError(f"setting POLICIES: entry {index} must be a JSON object with {list(POLICY_FIELDS)}")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        shown = repr(name[:40]) if isinstance(name, str) else "missing" if name is None else "not a string"
        raise ConfigError(
            f"setting POLICIES: entry {index} needs a name of 1-40 letters, digits, '-' or '_' (it is {shown})"
        )
    if name.startswith(retention.NAME_PREFIX):
        raise ConfigError(f"setting POLICIES: policy {name!r}: names starting {retention.NAME_PREFIX!r} are reserved")
    unknown = sorted(str(key) for key in entry if key not in POLICY_FIELDS)
    if unknown:
        raise ConfigError(
            f"setting POLICIES: policy {name!r}: unknown fields {unknown}; allowed fields are {list(POLICY_FIELDS)}"
        )
    fields = {key: value for key, value in entry.items() if key != "name"}
    fields.setdefault("dryRun", True)  # safe by default: a policy reports until told to act
    fields.setdefault("account", settings.default_account)
    problems = _problems(fields, settings, settings.fleet)
    if problems:
        raise ConfigError(f"setting POLICIES: policy {name!r}: {problems}")
    return FleetPolicy(name, SOURCE_POLICIES, fields)


def _problems(fields: dict[str, Any], settings: Settings, fleet: FleetSettings) -> str | None:
    """What the command contract says about a policy's command; None when it is a valid selector command."""
    if "select" not in fields and "jobSelect" not in fields:
        return "a policy needs select (and, for a task action over several jobs, jobSelect)"
    body = json.dumps({**fields, "commandId": _VALIDATION_ID}).encode("utf-8")
    try:
        parse_message(body, None, settings.accounts, settings.default_account, fleet)
    except InvalidCommand as exc:
        return str(exc)
    return None


# --- templates ----------------------------------------------------------------------------------------------------

# The common fleet needs, ready to paste into POLICIES (README, "Policy templates"; tests/integration/
# test_fleet_policies.py runs each on a seeded account). Each starts in dry run: add "dryRun": false to act.
TEMPLATES: Final[dict[str, dict[str, Any]]] = {
    "delete-old-completed-tasks": {
        "action": "deleteTask",
        "jobSelect": {"idPrefix": ""},
        "select": {"state": "completed", "olderThan": "P7D"},
        "limit": 10000,
    },
    "complete-idle-jobs": {
        "action": "terminateJob",
        "select": {"state": "active", "allTasksComplete": True, "olderThan": "PT1H"},
    },
    "delete-old-completed-jobs": {
        "action": "deleteJob",
        "select": {"state": "completed", "olderThan": "P30D"},
    },
    "terminate-stuck-tasks": {
        "action": "terminateTask",
        "jobSelect": {"state": "active"},
        "select": {"state": "running", "olderThan": "PT6H"},
    },
    "terminate-orphan-empty-jobs": {
        "action": "terminateJob",
        "select": {"state": "active", "noTasks": True, "olderThan": "PT1H"},
    },
    "reactivate-tasks-failed-with-exit-codes": {
        "action": "reactivateTask",
        "jobSelect": {"state": "active"},
        "select": {"state": "completed", "exitCodes": [137, 143]},
        "limit": 500,
    },
}


def templates_markdown() -> str:
    """The templates as the README prints them (a test keeps the README equal to this)."""
    lines = ["```json", "["]
    entries = [json.dumps({"name": name, **fields}) for name, fields in TEMPLATES.items()]
    lines += [f"  {entry}," for entry in entries[:-1]] + [f"  {entries[-1]}", "]", "```"]
    return "\n".join(lines)


# --- runs -------------------------------------------------------------------------------------------------------


def _enqueue(bus: Producer, policies: Iterable[FleetPolicy], slot: str, event: str, settings: Settings) -> list[str]:
    chosen = list(policies)
    if chosen and settings.fleet.scope.empty:
        # Each command would be refused InvalidCommand: say so once instead of dead-lettering every run.
        log.warning(
            "%s",
            json.dumps(
                {
                    "event": event.replace("Enqueued", "Skipped"),
                    "slot": slot,
                    "reason": "FLEET_SCOPE_PREFIXES is empty, so no job is in scope: set it (e.g. 'batch-' or '*')",
                }
            ),
        )
        return []
    messages = [policy.message(run_id(policy, slot)) for policy in chosen]
    if messages:
        bus.enqueue(messages)
    ids = [message.message_id for message in messages]
    log.info(
        "%s",
        json.dumps({"event": event, "slot": slot, "commandIds": ids, "dryRun": [p.dry_run for p in chosen]}),
    )
    return ids


def run_policies(bus: Producer, settings: Settings, now: datetime) -> list[str]:
    """The ``run_policies`` timer: one selector command per ``POLICIES`` entry, ids from this run's slot."""
    slot = ncrontab.slot(settings.policy_schedule, now)
    chosen = (policy for policy in settings.policies if policy.source == SOURCE_POLICIES)
    return _enqueue(bus, chosen, slot, POLICIES_RUN_EVENT, settings)


def run_retention(bus: Producer, settings: Settings, now: datetime) -> list[str]:
    """The ``retention_cleanup`` timer: the retention policy's command per account, ids from this run's slot."""
    slot = ncrontab.slot(settings.retention.schedule, now)
    chosen = (policy for policy in settings.policies if policy.source == SOURCE_RETENTION)
    return _enqueue(bus, chosen, slot, RETENTION_RUN_EVENT, settings)


def by_name(settings: Settings) -> dict[str, FleetPolicy]:
    return {policy.name: policy for policy in settings.policies}
