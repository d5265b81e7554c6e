"""The command contract: parse a queue message body into a typed, validated command.

The rules here and ``schemas/command.schema.json`` describe the same contract; a test keeps
them in step. Every broken rule is reported at once, so a producer can fix a message in one go.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Final

from shared.config import ACTIONS
from shared.messages import COMMAND_ID_PROPERTY, Outbound

TASK_ACTIONS: Final = frozenset({"terminateTask", "deleteTask", "reactivateTask"})
FIELDS: Final = frozenset(
    {
        "action",
        "jobId",
        "taskId",
        "account",
        "reason",
        "force",
        "ifMatch",
        "ifUnmodifiedSince",
        "dryRun",
        "commandId",
        "requestedBy",
    }
)
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
# commandId becomes part of Service Bus message ids (max 128 chars) with an attempt suffix.
MAX_COMMAND_ID: Final = 100
COMMAND_ID_PATTERN: Final = re.compile(r"[\x21-\x7e]{1,100}")
ETAG_PATTERN: Final = re.compile(r"[\x21-\x7e]{1,128}")
MAX_REASON: Final = 64
MAX_REQUESTED_BY: Final = 256
MAX_BODY_BYTES: Final = 64 * 1024


@dataclass(frozen=True)
class Parsed:
    """The fields of an invalid command that did pass their own rules; its outcome keeps them."""

    action: str | None = None
    job_id: str | None = None
    task_id: str | None = None
    account: str | None = None
    command_id: str | None = None
    dry_run: bool = False
    requested_by: str | None = None


class InvalidCommand(ValueError):
    """The message breaks the contract; ``problems`` lists every broken rule, ``parsed`` what was fine."""

    def __init__(self, problems: list[str], parsed: Parsed | None = None) -> None:
        self.problems = problems
        self.parsed = parsed or Parsed()
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Command:
    action: str
    job_id: str
    task_id: str | None
    account: str
    command_id: str
    reason: str | None = None
    force: bool = False
    if_match: str | None = None
    if_unmodified_since: datetime | None = None
    dry_run: bool = False
    requested_by: str | None = None

    def to_json(self) -> bytes:
        """Canonical body, commandId included (retry copies carry it explicitly)."""
        body: dict[str, Any] = {"action": self.action, "jobId": self.job_id, "account": self.account}
        # Present fields only, always in this order.
        if self.task_id is not None:
            body["taskId"] = self.task_id
        if self.reason is not None:
            body["reason"] = self.reason
        if self.force:
            body["force"] = self.force
        if self.if_match is not None:
            body["ifMatch"] = self.if_match
        if self.if_unmodified_since:
            body["ifUnmodifiedSince"] = http_date(self.if_unmodified_since)
        if self.dry_run:
            body["dryRun"] = self.dry_run
        if self.command_id is not None:
            body["commandId"] = self.command_id
        if self.requested_by is not None:
            body["requestedBy"] = self.requested_by
        return _COMPACT_JSON.encode(body).encode()

    def to_message(self) -> Outbound:
        """A new command for the queue; ``message_id`` = commandId, so duplicate detection keys on it."""
        return Outbound(
            body=self.to_json(),
            message_id=self.command_id,
            subject=self.action,
            application_properties={COMMAND_ID_PROPERTY: self.command_id},
            correlation_id=self.command_id,
        )


def stable_id(kind: str, *parts: str) -> str:
    """A commandId that the same parts always give: readable when it fits, a SHA-256 digest otherwise.

    Producers derive ids this way (retention: account/job/task; alerts: alert id + target), so a
    repeated run or notification makes the same message_id and duplicate detection drops it.
    """
    readable = ":".join((kind, *parts))
    if len(readable) <= MAX_COMMAND_ID and COMMAND_ID_PATTERN.fullmatch(readable):
        return readable
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()
    return f"{kind}:{digest}"


# json.dumps(..., separators=...) builds a new encoder per call; one shared encoder is stateless.
_COMPACT_JSON: Final = json.JSONEncoder(separators=(",", ":"))


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(UTC), usegmt=True)


def _parse_moment(text: str) -> datetime | None:
    """Accept RFC 1123 (as HTTP sends it) or ISO 8601 with an explicit offset.

    The moment must be one an HTTP date can carry (it is sent as If-Unmodified-Since and written
    into retry copies as RFC 1123): in UTC, a four-digit year of 1900 or later (RFC 5322 3.3).
    """
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError, OverflowError):  # OverflowError: a year or offset out of any range
        try:
            moment = datetime.fromisoformat(text)
        except (ValueError, OverflowError):
            return None
    if moment.tzinfo is None:
        return None
    try:
        year = moment.astimezone(UTC).year
    except OverflowError:  # e.g. 9999-12-31T23:59:59-01:00 is past the year 9999 in UTC
        return None
    return moment if year >= 1900 else None


def _decode(body: bytes) -> dict[str, Any]:
    if len(body) > MAX_BODY_BYTES:
        raise InvalidCommand([f"body is {len(body)} bytes; a command is at most {MAX_BODY_BYTES} bytes"])
    try:
        value = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidCommand(["body is not UTF-8 text; send the command as UTF-8 JSON"]) from None
    except json.JSONDecodeError as exc:
        raise InvalidCommand([f"body is not valid JSON ({exc.msg} at position {exc.pos})"]) from None
    except RecursionError:  # e.g. 60,000 nested "[" fit in 64 KiB
        raise InvalidCommand(["body nests JSON too deeply; a command is one flat JSON object"]) from None
    except ValueError:  # int() refuses numbers of more than 4,300 digits
        raise InvalidCommand(["body has a number too long to read; no command field takes such a number"]) from None
    if not isinstance(value, dict):
        raise InvalidCommand([f"body must be a JSON object, not {type(value).__name__}"])
    return value


class _Checker:
    """Collects every broken rule instead of stopping at the first."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.problems: list[str] = []

    def string(self, name: str, pattern: re.Pattern[str] | None = None, hint: str = "") -> str | None:
        if name not in self.data:
            return None
        value = self.data[name]
        if not isinstance(value, str):  # JSON null included: a field that is present must be a string
            self.problems.append(f"{name} must be a string")
            return None
        if not _encodable(value):
            self.problems.append(f"{name} is not valid Unicode text (it has an unpaired surrogate such as \\ud800)")
            return None
        if pattern is not None and not pattern.fullmatch(value):
            self.problems.append(f"{name} {value[:80]!r} is invalid: {hint}")
            return None
        return value

    def boolean(self, name: str) -> bool:
        value = self.data.get(name, False)
        if not isinstance(value, bool):
            self.problems.append(f"{name} must be true or false")
            return False
        return value

    def only_for_terminate_job(self, action: str | None, name: str) -> None:
        if name in self.data and action in TASK_ACTIONS:
            self.problems.append(f"{name} applies to terminateJob only; remove it from a {action} command")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


ID_HINT: Final = "use 1-64 letters, digits, '-' or '_'"


def parse_command(body: bytes, message_id: str | None, accounts: Collection[str], default_account: str) -> Command:
    """Validate ``body`` against the contract; raise InvalidCommand naming every broken rule."""
    data = _decode(body)
    check = _Checker(data)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        check.problems.append(f"unknown fields {unknown}; allowed fields are {sorted(FIELDS)}")
    action = _action(check)
    job_id, task_id = _targets(check, action)
    account = check.string("account")
    if account is None:  # absent (or not a string, already reported): the default account
        account = default_account
    if account not in accounts:
        check.problems.append(f"account {account[:40]!r} is not configured; known accounts: {sorted(accounts)}")
    reason, force = _terminate_job_options(check, action)
    if_match, since = _preconditions(check)
    dry_run = check.boolean("dryRun")
    command_id = _command_id(check, message_id)
    requested_by = check.string("requestedBy")
    if requested_by is not None and len(requested_by) > MAX_REQUESTED_BY:
        check.problems.append(f"requestedBy must be at most {MAX_REQUESTED_BY} characters")

    if check.problems:
        parsed = Parsed(
            action=action,
            job_id=job_id,
            task_id=task_id,
            account=account if account in accounts else None,
            command_id=command_id,
            dry_run=dry_run,
            requested_by=requested_by if requested_by is not None and len(requested_by) <= MAX_REQUESTED_BY else None,
        )
        raise InvalidCommand(check.problems, parsed)
    assert action is not None and job_id is not None and command_id is not None  # guaranteed by the checks
    return Command(
        action=action,
        job_id=job_id,
        task_id=task_id,
        account=account,
        command_id=command_id,
        reason=reason,
        force=force,
        if_match=if_match,
        if_unmodified_since=since,
        dry_run=dry_run,
        requested_by=requested_by,
    )


def _action(check: _Checker) -> str | None:
    action = check.string("action")
    if action is None and "action" not in check.data:
        check.problems.append(f"action is required: one of {list(ACTIONS)}")
    elif action is not None and action not in ACTIONS:
        check.problems.append(f"action {action[:40]!r} is unknown; use one of {list(ACTIONS)}")
        return None
    return action


def _targets(check: _Checker, action: str | None) -> tuple[str | None, str | None]:
    job_id = check.string("jobId", ID_PATTERN, ID_HINT)
    if "jobId" not in check.data:
        check.problems.append("jobId is required")
    task_id = check.string("taskId", ID_PATTERN, ID_HINT)
    if action in TASK_ACTIONS and "taskId" not in check.data:
        check.problems.append(f"taskId is required for {action}")
    if action == "terminateJob" and "taskId" in check.data:
        check.problems.append("taskId must not be given for terminateJob")
    return job_id, task_id


def _terminate_job_options(check: _Checker, action: str | None) -> tuple[str | None, bool]:
    check.only_for_terminate_job(action, "reason")
    check.only_for_terminate_job(action, "force")
    reason = check.string("reason")
    if reason is not None and not 1 <= len(reason) <= MAX_REASON:
        check.problems.append(f"reason must be 1-{MAX_REASON} characters")
    return reason, check.boolean("force")


def _preconditions(check: _Checker) -> tuple[str | None, datetime | None]:
    if_match = check.string("ifMatch", ETAG_PATTERN, "use the ETag as Batch returned it, e.g. 0x8D4125FD1A825A4")
    since_text = check.string("ifUnmodifiedSince")
    since = _parse_moment(since_text) if since_text is not None else None
    if since_text is not None and since is None:
        check.problems.append(
            "ifUnmodifiedSince must be an RFC 1123 date (Sun, 06 Nov 1994 08:49:37 GMT) "
            "or ISO 8601 with an offset (1994-11-06T08:49:37Z)"
        )
    if "ifMatch" in check.data and "ifUnmodifiedSince" in check.data:
        check.problems.append("give at most one of ifMatch and ifUnmodifiedSince")
    return if_match, since


def _command_id(check: _Checker, message_id: str | None) -> str | None:
    command_id = check.string("commandId", COMMAND_ID_PATTERN, "use 1-100 printable ASCII characters, no spaces")
    if "commandId" in check.data:
        return command_id
    if message_id is None or not COMMAND_ID_PATTERN.fullmatch(message_id):
        check.problems.append(
            "commandId is missing and the message_id cannot stand in for it (it must be a string of 1-100 "
            "printable ASCII characters); add a commandId field"
        )
        return None
    return message_id
