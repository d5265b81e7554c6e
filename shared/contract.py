"""The command contract: parse a queue message body into a typed, validated command.

A message is either a single-target ``Command`` (one task or one job) or a ``Selection``: a selector
command (``select`` / ``jobSelect`` / ``limit``) that ``shared/fanout.py`` expands page by page into
single-target commands (README, "Fleet operations"). The rules here and ``schemas/command.schema.json``
describe the same contract; a test keeps them in step. Every broken rule is reported at once, so a
producer can fix a message in one go.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, Final, NamedTuple

from shared.config import ACTIONS, FleetSettings
from shared.messages import COMMAND_ID_PROPERTY, Outbound, id_base
from shared.selectors import JobSelector, TaskSelector, parse_job_selector, parse_task_selector, whole_number

TASK_ACTIONS: Final = frozenset({"terminateTask", "deleteTask", "reactivateTask"})
JOB_ACTIONS: Final = frozenset({"terminateJob", "deleteJob"})
SELECTOR_FIELDS: Final = ("select", "jobSelect", "limit", "continuation")
FIELDS: Final = frozenset(
    {
        *SELECTOR_FIELDS,
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
# Selector pages: the page number is part of message ids (``<commandId>#dryRun#p<page>#<attempt>``, at most
# 100 + 7 + 8 + 4 = 119 of Service Bus's 128 characters), so it is bounded.
MAX_PAGE: Final = 999_999
MAX_PENDING: Final = 500  # targets one continuation carries forward: one listing page (shared/fanout.py)
MAX_FIRST_TARGETS: Final = 10
MAX_COUNT: Final = 10**12
MAX_LINK: Final = 4096
FIRST_TARGET_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}(?:/[A-Za-z0-9_-]{1,64})?")
SCOPE_SETTING: Final = "FLEET_SCOPE_PREFIXES"


class Parsed(NamedTuple):
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


class Command(NamedTuple):
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


class Continuation(NamedTuple):
    """Where a selector's expansion stands: carried by the message of page ``page`` (2 and later).

    ``next_link`` is the listing page to read (None: nothing left to list, this message only enqueues
    ``pending`` and ends the selector). ``pending`` are the targets the previous page chose (ids; for
    jobSelect with ``pending_limits``, each job's task budget): carrying them forward instead of enqueuing
    them where they were listed makes a redelivered page harmless even when the listing changed meanwhile,
    because only the first continuation of a page survives duplicate detection. ``as_of`` fixes the
    selector's clock (``olderThan``) at page 1; the counts are running totals; ``remaining`` is the budget
    left after ``pending``.
    """

    page: int
    next_link: str | None
    as_of: datetime
    remaining: int
    listed: int = 0
    matched: int = 0
    selected: int = 0
    enqueued: int = 0
    pending: tuple[str, ...] = ()
    pending_limits: tuple[int, ...] = ()
    first_targets: tuple[str, ...] = ()
    limit_reached: bool = False

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "page": self.page,
            "next": self.next_link,
            "asOf": iso_seconds(self.as_of),
            "remaining": self.remaining,
            "listed": self.listed,
            "matched": self.matched,
            "selected": self.selected,
            "enqueued": self.enqueued,
        }
        if self.pending:
            body["pending"] = list(self.pending)
        if self.pending_limits:
            body["pendingLimits"] = list(self.pending_limits)
        if self.first_targets:
            body["firstTargets"] = list(self.first_targets)
        if self.limit_reached:
            body["limitReached"] = True
        return body


class Selection(NamedTuple):
    """A selector command: act on every task or job a selector matches, at most ``limit`` of them.

    Three kinds: ``tasks`` (a task action, ``jobId`` and a task selector in ``select``), ``jobs`` (a job
    action and a job selector in ``select``), ``jobsThenTasks`` (a task action, a job selector in
    ``jobSelect`` and a task selector in ``select``: one per-job ``tasks`` selection per matching job).
    """

    action: str
    account: str
    command_id: str
    job_id: str | None
    select: TaskSelector | JobSelector
    job_select: JobSelector | None
    limit: int
    reason: str | None = None
    force: bool = False
    dry_run: bool = False
    requested_by: str | None = None
    continuation: Continuation | None = None

    @property
    def kind(self) -> str:
        if self.job_select is not None:
            return "jobsThenTasks"
        return "jobs" if self.action in JOB_ACTIONS else "tasks"

    @property
    def page(self) -> int:
        return self.continuation.page if self.continuation is not None else 1

    def to_json(self) -> bytes:
        """Canonical body, commandId included."""
        body: dict[str, Any] = {"action": self.action, "account": self.account}
        if self.job_id is not None:
            body["jobId"] = self.job_id
        body["select"] = self.select.to_json()
        if self.job_select is not None:
            body["jobSelect"] = self.job_select.to_json()
        body["limit"] = self.limit
        if self.reason is not None:
            body["reason"] = self.reason
        if self.force:
            body["force"] = True
        if self.dry_run:
            body["dryRun"] = True
        body["commandId"] = self.command_id
        if self.requested_by is not None:
            body["requestedBy"] = self.requested_by
        if self.continuation is not None:
            body["continuation"] = self.continuation.to_json()
        return _COMPACT_JSON.encode(body).encode()

    def with_continuation(self, continuation: Continuation) -> Selection:
        """The message of the next page. ``continuation`` is the last field; ``_make`` from a list, because
        ``_replace`` leaves a tuple in CPython 3.11's free list on every call (bounded, but it shows as growth)."""
        return Selection._make([*self[:-1], continuation])

    def message_id(self) -> str:
        """Page 1 under its commandId (as a producer sends it); later pages as ``page_message_id`` says."""
        if self.continuation is None:
            return self.command_id
        return page_message_id(self.command_id, self.dry_run, self.continuation.page)

    def to_message(self) -> Outbound:
        return Outbound(
            body=self.to_json(),
            message_id=self.message_id(),
            subject=self.action,
            application_properties={COMMAND_ID_PROPERTY: self.command_id},
            correlation_id=self.command_id,
        )


def iso_seconds(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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


def child_id(parent: str, *parts: str) -> str:
    """The commandId of a selector's per-target command: ``<parent>/<jobId>[/<taskId>]`` when that fits.

    Otherwise the first 34 characters of the parent, ``/~`` and the SHA-256 of the parent and the parts
    (100 characters). Deterministic, so a re-expanded page enqueues the same ids and duplicate detection
    drops them; a digest id ends in ``~<hex>``, which no readable id can (Batch ids have no ``~``).
    """
    readable = "/".join((parent, *parts))
    if len(readable) <= MAX_COMMAND_ID and COMMAND_ID_PATTERN.fullmatch(readable):
        return readable
    digest = hashlib.sha256("\n".join((parent, *parts)).encode("utf-8")).hexdigest()
    return f"{parent[:34]}/~{digest}"


def page_message_id(command_id: str, dry_run: bool, page: int, attempt: int | None = None, generation: int = 0) -> str:
    """Message ids of a selector's pages: ``<commandId>[#dryRun][#r<n>]#p<page>[#<attempt>]``.

    Page 1 arrives under the producer's own message id; later pages (continuations) and every retry copy
    carry the page, so a redelivered page re-enqueues the same ids and duplicate detection drops them.
    """
    return f"{id_base(command_id, dry_run, generation)}#p{page}" + (f"#{attempt}" if attempt is not None else "")


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


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


ID_HINT: Final = "use 1-64 letters, digits, '-' or '_'"


def parse_command(body: bytes, message_id: str | None, accounts: Collection[str], default_account: str) -> Command:
    """A single-target command (one task or one job); a selector command is refused here.

    Producers that make single-target commands (alerts) and tests use this; the queue function reads
    both kinds with ``parse_message``.
    """
    found = parse_message(body, message_id, accounts, default_account, None)
    if isinstance(found, Selection):  # only reachable with fleet settings, which this path never passes
        raise InvalidCommand(["a selector command is not accepted here"])
    return found


def parse_message(
    body: bytes,
    message_id: str | None,
    accounts: Collection[str],
    default_account: str,
    fleet: FleetSettings | None,
) -> Command | Selection:
    """Validate ``body`` against the contract; raise InvalidCommand naming every broken rule.

    A body with any of ``select``, ``jobSelect``, ``limit`` or ``continuation`` is a selector command; it
    needs ``fleet`` (the scope guard and the limits), and without it (or with an empty scope) it is refused
    with a problem that names ``FLEET_SCOPE_PREFIXES``.
    """
    data = _decode(body)
    check = _Checker(data)
    unknown = sorted(set(data) - FIELDS)
    if unknown:
        check.problems.append(f"unknown fields {unknown}; allowed fields are {sorted(FIELDS)}")
    action = _action(check)
    account = check.string("account")
    if account is None:  # absent (or not a string, already reported): the default account
        account = default_account
    if account not in accounts:
        check.problems.append(f"account {account[:40]!r} is not configured; known accounts: {sorted(accounts)}")
    dry_run = check.boolean("dryRun")
    command_id = _command_id(check, message_id)
    requested_by = check.string("requestedBy")
    if requested_by is not None and len(requested_by) > MAX_REQUESTED_BY:
        check.problems.append(f"requestedBy must be at most {MAX_REQUESTED_BY} characters")
    reason, force = _job_options(check, action)
    common = _Common(action, account if account in accounts else None, command_id, dry_run, requested_by)
    if any(name in data for name in SELECTOR_FIELDS):
        return _selection(check, common, reason, force, fleet)
    job_id, task_id = _targets(check, action)
    if_match, since = _preconditions(check)
    if check.problems:
        raise InvalidCommand(check.problems, common.parsed(job_id, task_id))
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


class _Common(NamedTuple):
    """The fields every command has, as far as they passed their own rules."""

    action: str | None
    account: str | None
    command_id: str | None
    dry_run: bool
    requested_by: str | None

    def parsed(self, job_id: str | None, task_id: str | None) -> Parsed:
        requested_by = self.requested_by
        return Parsed(
            action=self.action,
            job_id=job_id,
            task_id=task_id,
            account=self.account,
            command_id=self.command_id,
            dry_run=self.dry_run,
            requested_by=requested_by if requested_by is not None and len(requested_by) <= MAX_REQUESTED_BY else None,
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
    if action in JOB_ACTIONS and "taskId" in check.data:
        check.problems.append(f"taskId must not be given for {action}")
    return job_id, task_id


def _job_options(check: _Checker, action: str | None) -> tuple[str | None, bool]:
    """``reason`` is terminateJob's, ``force`` terminateJob's and deleteJob's."""
    if "reason" in check.data and action is not None and action != "terminateJob":
        check.problems.append(f"reason applies to terminateJob only; remove it from a {action} command")
    if "force" in check.data and action in TASK_ACTIONS:
        check.problems.append(f"force applies to terminateJob and deleteJob only; remove it from a {action} command")
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


# --- selector commands ---------------------------------------------------------------------------------------


def _selection(
    check: _Checker, common: _Common, reason: str | None, force: bool, fleet: FleetSettings | None
) -> Selection:
    """The selector half of the contract: shape, selectors, limit, continuation and the scope guard."""
    data, action = check.data, common.action
    if fleet is None or fleet.scope.empty:
        check.problems.append(
            f"selectors are disabled: {SCOPE_SETTING} is empty, so no job is in scope; set it to the job-id "
            "prefixes selectors may act on, or * for every job"
        )
    if "ifMatch" in data or "ifUnmodifiedSince" in data:
        check.problems.append(
            "ifMatch and ifUnmodifiedSince name one target's version; they do not apply to a selector command"
        )
    job_id = check.string("jobId", ID_PATTERN, ID_HINT)
    select: TaskSelector | JobSelector | None = None
    job_select: JobSelector | None = None
    if action in TASK_ACTIONS:
        select, job_select = _task_action_shape(check, action)
    elif action in JOB_ACTIONS:
        select = _job_action_shape(check, action)
    if fleet is not None and not fleet.scope.empty:
        _scope_rules(check, fleet, job_id, select, job_select)
    limit = _limit(check, fleet)
    kind = "jobsThenTasks" if job_select is not None else ("jobs" if action in JOB_ACTIONS else "tasks")
    continuation = _continuation(check, fleet, kind, common.dry_run)
    if check.problems:
        raise InvalidCommand(check.problems, common.parsed(job_id, None))
    assert action is not None and common.account is not None and common.command_id is not None
    assert select is not None and limit is not None  # guaranteed by the checks
    return Selection(
        action=action,
        account=common.account,
        command_id=common.command_id,
        job_id=job_id,
        select=select,
        job_select=job_select,
        limit=limit,
        reason=reason,
        force=force,
        dry_run=common.dry_run,
        requested_by=common.requested_by,
        continuation=continuation,
    )


def _task_action_shape(check: _Checker, action: str) -> tuple[TaskSelector | None, JobSelector | None]:
    data, problems = check.data, check.problems
    if "taskId" in data:
        problems.append("taskId cannot be combined with select or jobSelect: the selector picks the tasks")
    job_select = None
    if "jobSelect" in data:
        if "jobId" in data:
            problems.append("jobId cannot be combined with jobSelect: jobSelect picks the jobs")
        if "select" not in data:
            problems.append(f"{action} with jobSelect also needs select (a task selector for each job's tasks)")
        job_select = parse_job_selector(data["jobSelect"], "jobSelect", problems)
    elif "jobId" not in data:
        problems.append(
            f"a {action} selector needs jobId (the job whose tasks it selects) or jobSelect (a job selector)"
        )
    if "select" not in data:
        if "jobSelect" not in data:
            problems.append(f"a {action} selector command needs select (a task selector)")
        return None, job_select
    return parse_task_selector(data["select"], "select", problems), job_select


def _job_action_shape(check: _Checker, action: str) -> JobSelector | None:
    data, problems = check.data, check.problems
    if "jobSelect" in data:
        problems.append(f"jobSelect applies to task actions; for {action} put the job selector in select")
    if "taskId" in data:
        problems.append(f"taskId must not be given for {action}")
    if "jobId" in data:
        problems.append(f"jobId cannot be combined with select: for {action} the job selector picks the jobs")
    if "select" not in data:
        problems.append(f"a {action} selector command needs select (a job selector)")
        return None
    return parse_job_selector(data["select"], "select", problems)


def _scope_rules(
    check: _Checker,
    fleet: FleetSettings,
    job_id: str | None,
    select: TaskSelector | JobSelector | None,
    job_select: JobSelector | None,
) -> None:
    scope = fleet.scope
    if job_id is not None and not scope.contains(job_id):
        check.problems.append(
            f"jobId {job_id!r} is outside {SCOPE_SETTING} ({scope.describe()}); selectors act only on jobs in scope"
        )
    for path, selector in (("select", select), ("jobSelect", job_select)):
        if isinstance(selector, JobSelector) and selector.id_prefix and not scope.admits_prefix(selector.id_prefix):
            check.problems.append(
                f"{path}.idPrefix {selector.id_prefix!r} is outside {SCOPE_SETTING} ({scope.describe()}): "
                "it could never select a job in scope"
            )


def _limit(check: _Checker, fleet: FleetSettings | None) -> int | None:
    most = fleet.max_limit if fleet is not None else None
    if "limit" not in check.data:
        return fleet.default_limit if fleet is not None else None
    value = check.data["limit"]
    limit = whole_number(value)
    if limit is None or not 1 <= limit <= (most or 0):
        shown = repr(value) if isinstance(value, int | float | bool | str) and len(repr(value)) < 30 else "that"
        upper = f"{most} (FLEET_MAX_LIMIT)" if most is not None else "FLEET_MAX_LIMIT"
        check.problems.append(f"limit must be a whole number from 1 to {upper}; {shown} is not")
        return None
    return limit


_CONTINUATION_FIELDS: Final = frozenset(
    {
        "page",
        "next",
        "asOf",
        "remaining",
        "listed",
        "matched",
        "selected",
        "enqueued",
        "pending",
        "pendingLimits",
        "firstTargets",
        "limitReached",
    }
)


def _continuation(check: _Checker, fleet: FleetSettings | None, kind: str, dry_run: bool) -> Continuation | None:
    """The internal ``continuation`` field: validated like everything else, since anyone may send it."""
    if "continuation" not in check.data:
        return None
    value = check.data["continuation"]
    problems: list[str] = []
    if not isinstance(value, dict):
        check.problems.append("continuation must be a JSON object (it is written by the app for later pages)")
        return None
    unknown = sorted(str(name) for name in value if name not in _CONTINUATION_FIELDS)
    if unknown:
        problems.append(f"has unknown fields {unknown}")

    def number(name: str, low: int, high: int) -> int:
        found = whole_number(value.get(name))
        if found is None or not low <= found <= high:
            problems.append(f"{name} must be a whole number from {low} to {high}")
            return low
        return found

    page = number("page", 2, MAX_PAGE)
    remaining = number("remaining", 0, fleet.max_limit if fleet is not None else 0)
    counts = [number(name, 0, MAX_COUNT) for name in ("listed", "matched", "selected", "enqueued")]
    next_link = value.get("next")
    if next_link is not None and not (
        isinstance(next_link, str)
        and len(next_link) <= MAX_LINK
        and next_link.startswith(("https://", "http://"))
        and _encodable(next_link)
    ):
        problems.append(f"next must be null or a URL of at most {MAX_LINK} characters")
        next_link = None
    as_of = _parse_moment(value["asOf"]) if isinstance(value.get("asOf"), str) else None
    if as_of is None:
        problems.append("asOf must be an ISO 8601 time with an offset")
    pending, limits = _pending(value, kind, dry_run, fleet, problems)
    first = _id_list(value, "firstTargets", FIRST_TARGET_PATTERN, MAX_FIRST_TARGETS, problems)
    limit_reached = value.get("limitReached", False)
    if not isinstance(limit_reached, bool):
        problems.append("limitReached must be true or false")
        limit_reached = False
    check.problems.extend(f"continuation.{problem}" for problem in problems)
    if problems or as_of is None:
        return None
    return Continuation(
        page=page,
        next_link=next_link,
        as_of=as_of,
        remaining=remaining,
        listed=counts[0],
        matched=counts[1],
        selected=counts[2],
        enqueued=counts[3],
        pending=pending,
        pending_limits=limits,
        first_targets=first,
        limit_reached=limit_reached,
    )


def _pending(
    value: dict[str, Any], kind: str, dry_run: bool, fleet: FleetSettings | None, problems: list[str]
) -> tuple[tuple[str, ...], tuple[int, ...]]:
    pending = _id_list(value, "pending", ID_PATTERN, MAX_PENDING, problems)
    raw = value.get("pendingLimits", [])
    most = fleet.max_limit if fleet is not None else 0
    limits: tuple[int, ...] = ()
    if kind == "jobsThenTasks" and pending:
        numbers = [whole_number(n) for n in raw] if isinstance(raw, list) else []
        limits = tuple(n for n in numbers if n is not None and 1 <= n <= most)
        if not isinstance(raw, list) or len(limits) != len(raw) or len(limits) != len(pending):
            problems.append("pendingLimits must give each pending job a task limit from 1 to FLEET_MAX_LIMIT")
            limits = ()
    elif "pendingLimits" in value:
        problems.append("pendingLimits belongs to jobSelect pending jobs only")
    if dry_run and pending:
        problems.append("a dry run enqueues nothing, so it carries no pending targets")
    if kind != "tasks" and fleet is not None and pending:
        outside = [job for job in pending if not fleet.scope.contains(job)]
        if outside:
            problems.append(f"pending names jobs outside {SCOPE_SETTING}: {outside[:5]}")
    return pending, limits


def _id_list(
    value: dict[str, Any], name: str, pattern: re.Pattern[str], most: int, problems: list[str]
) -> tuple[str, ...]:
    raw = value.get(name, [])
    if (
        not isinstance(raw, list)
        or len(raw) > most
        or not all(isinstance(item, str) and pattern.fullmatch(item) for item in raw)
    ):
        problems.append(f"{name} must be a list of at most {most} Batch ids")
        return ()
    return tuple(raw)
