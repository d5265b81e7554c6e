"""Retention cleanup: enqueue one deleteTask command per old completed task (docs/design.md, "Retention and alerts").

Everything streams. Job and task listings are read one page at a time (the server filters and trims
them with ``$filter`` and ``$select``), commands are generated lazily and sent in fixed-size chunks, so
memory does not grow with the number of tasks. Command ids are derived from (account, job, task), so
an overlapping or repeated run produces the same ``message_id`` and the queue's duplicate detection
drops the repeat.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from json.encoder import encode_basestring_ascii as _encode_json_string
from typing import Any, Final, Protocol, cast
from urllib.parse import quote

from shared.batch_client import BatchListError, UntrustedLink
from shared.config import RetentionSettings, Settings
from shared.contract import COMMAND_ID_PATTERN, ID_PATTERN, MAX_COMMAND_ID, Command, stable_id
from shared.messages import COMMAND_ID_PROPERTY, Outbound, Producer, json_body

log = logging.getLogger("batch_lifecycle")

PAGE_SIZE: Final = "1000"  # Batch's largest maxresults: fewest round trips for a bounded page
# Commands handed to the gateway at a time. The gateway holds its queue-sender lock while it reads the
# iterable, so feeding it chunks keeps the Batch listing calls outside that lock (retry copies scheduled
# by process_command on other threads are not held up) and bounds what is in memory at once.
ENQUEUE_CHUNK: Final = 500
# Listing events (pages of tasks, jobs) the read-ahead helper may hold before the planner takes them.
READ_AHEAD_EVENTS: Final = 8
REQUESTED_BY: Final = "retention_cleanup"
SUMMARY_SUBJECT: Final = "retentionSummary"


class Lister(Protocol):
    """The part of ``BatchClient`` the planner uses."""

    def list_values(self, account: str, path: str, params: Mapping[str, str]) -> Iterator[Mapping[str, Any]]: ...


def odata_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def odata_datetime(moment: datetime) -> str:
    return "datetime'" + moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") + "'"


def cutoff_time(now: datetime, days: int) -> datetime:
    """Tasks that completed before this moment qualify; whole seconds, as the filter literal carries."""
    return (now.astimezone(UTC) - timedelta(days=days)).replace(microsecond=0)


def job_filter(settings: RetentionSettings) -> str | None:
    clauses = []
    if settings.job_prefix:
        clauses.append(f"startswith(id,{odata_string(settings.job_prefix)})")
    if settings.job_state:
        clauses.append(f"state eq {odata_string(settings.job_state)}")
    return " and ".join(clauses) or None


def task_filter(settings: RetentionSettings, cutoff: datetime) -> str:
    clauses = ["state eq 'completed'", f"stateTransitionTime lt {odata_datetime(cutoff)}"]
    if settings.task_result == "success":
        clauses.append("executionInfo/result eq 'success'")
    return " and ".join(clauses)


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def qualifies(task: Mapping[str, Any], cutoff: datetime, success_only: bool) -> bool:
    """Re-check on our side what the filter asked for: a server that ignored part of it must not make
    us delete a running, recent or failed task."""
    if task.get("state") != "completed":
        return False
    moment = _parse_time(task.get("stateTransitionTime"))
    if moment is None or not moment < cutoff:
        return False
    if success_only:
        info = task.get("executionInfo")
        if not (isinstance(info, Mapping) and info.get("result") == "success"):
            return False
    task_id = task.get("id")
    return isinstance(task_id, str) and ID_PATTERN.fullmatch(task_id) is not None


@dataclass
class RetentionCounts:
    """Running totals, updated while the plan is consumed."""

    jobs_scanned: int = 0
    tasks_seen: int = 0
    listing_errors: int = 0


def plan_deletions(
    batch: Lister,
    settings: RetentionSettings,
    now: datetime,
    api_version: str,
    counts: RetentionCounts,
    *,
    read_ahead: int = 0,
) -> Generator[Outbound, None, None]:
    """Lazily yield one deleteTask command message per qualifying task of every selected account.

    With ``read_ahead`` > 0 a helper thread makes the listing requests ahead of the planner (so the
    Batch round trips overlap the planner's work) until ``read_ahead`` tasks have been listed; after that
    the planner pulls the rest lazily itself. A caller that takes at most ``read_ahead`` messages would
    have needed every one of those tasks, so no request is made that the lazy order would not make.
    Counting, the re-check and logging happen here either way, in listing order.
    """
    cutoff = cutoff_time(now, settings.days)
    success_only = settings.task_result == "success"
    events = _listing(batch, settings, cutoff, api_version)
    messages: _DeleteMessages | None = None
    for kind, account, job_id, item in _read_ahead(events, read_ahead) if read_ahead > 0 else events:
        if kind is _TASKS:
            for task in item:
                counts.tasks_seen += 1
                if qualifies(task, cutoff, success_only):
                    if messages is None or messages.job_id != job_id or messages.account != account:
                        messages = _DeleteMessages(account, job_id)
                    yield messages.message(task["id"])
        elif kind is _JOB:
            counts.jobs_scanned += 1
        else:
            _listing_failed(counts, account, job_id or None, item)


# Listing events, in the order the requests make them: (kind, account, job id, item) - a job of the job
# listing (job id ""), tasks of a job's task listing (a page of them, or one at a time from a Lister
# without list_value_pages), or a failed listing (job id "" for the job listing itself) with its exception.
_JOB: Final = "job"
_TASKS: Final = "tasks"
_FAILED: Final = "failed"
_Event = tuple[str, str, str, Any]


def _listing(batch: Lister, settings: RetentionSettings, cutoff: datetime, api_version: str) -> Iterator[_Event]:
    """Every selected account's jobs and, after each valid job id, that job's tasks; page by page."""
    job_params = {"api-version": api_version, "$select": "id,state", "maxresults": PAGE_SIZE}
    where = job_filter(settings)
    if where:
        job_params["$filter"] = where
    task_params = {
        "api-version": api_version,
        "$filter": task_filter(settings, cutoff),
        "$select": "id,state,stateTransitionTime" + (",executionInfo" if settings.task_result == "success" else ""),
        "maxresults": PAGE_SIZE,
    }
    for account in settings.accounts:
        try:
            for job in batch.list_values(account, "/jobs", job_params):
                yield _JOB, account, "", job
                job_id = job.get("id")
                if not (isinstance(job_id, str) and ID_PATTERN.fullmatch(job_id)):
                    continue
                path = f"/jobs/{quote(job_id, safe='')}/tasks"
                try:
                    for tasks in _value_pages(batch, account, path, dict(task_params)):
                        yield _TASKS, account, job_id, tasks
                except (BatchListError, UntrustedLink) as exc:
                    # One job failing (e.g. deleted between the two listings) must not stop the others.
                    yield _FAILED, account, job_id, exc
        except (BatchListError, UntrustedLink) as exc:
            yield _FAILED, account, "", exc


def _value_pages(
    batch: Lister, account: str, path: str, params: Mapping[str, str]
) -> Iterator[Sequence[Mapping[str, Any]]]:
    """A listing a page at a time when the Lister can (BatchClient), else one item at a time."""
    pages = getattr(batch, "list_value_pages", None)
    if pages is not None:
        return cast(Iterator[Sequence[Mapping[str, Any]]], pages(account, path, params))
    return ([item] for item in batch.list_values(account, path, params))


class _Raised:
    def __init__(self, error: Exception) -> None:
        self.error = error


_END: Final = object()
_HANDOVER: Final = object()


def _read_ahead(events: Iterator[_Event], tasks: int) -> Generator[_Event, None, None]:
    """``events``, pulled by a helper thread until ``tasks`` tasks were listed, then by the caller.

    The helper hands each event (a job, a page of tasks, a failure) over as soon as it has it, stays at
    most READ_AHEAD_EVENTS ahead (a bounded queue), and passes its exception on after the events before
    it. Closing this generator stops the helper (after the request it may be in) and closes ``events``.
    """
    handoff: queue.Queue[object] = queue.Queue(maxsize=READ_AHEAD_EVENTS)
    stop = threading.Event()
    thread = threading.Thread(
        target=_list_ahead, args=(events, tasks, handoff, stop), name="retention-listing", daemon=True
    )
    thread.start()
    try:
        while True:
            item = handoff.get()
            if isinstance(item, tuple):
                yield item
            elif item is _HANDOVER:
                thread.join()
                yield from events
                return
            elif isinstance(item, _Raised):
                raise item.error
            else:
                return
    finally:
        stop.set()
        thread.join()
        if isinstance(events, Generator):
            events.close()


def _list_ahead(events: Iterator[_Event], tasks: int, handoff: queue.Queue[object], stop: threading.Event) -> None:
    """The helper thread: list until ``tasks`` tasks are out, then hand the rest of the listing over."""
    listed = 0
    outcome: object = _END
    try:
        for event in events:
            if not _put(handoff, event, stop):
                return
            if event[0] is _TASKS:
                listed += len(event[3])
                if listed >= tasks:
                    outcome = _HANDOVER  # the planner pulls the rest itself, lazily: no request beyond the cap
                    break
    except Exception as exc:  # passed on to the planner, which raises it where the lazy order would
        outcome = _Raised(exc)
    _put(handoff, outcome, stop)


def _put(handoff: queue.Queue[object], item: object, stop: threading.Event) -> bool:
    """Wait for room in the queue, unless the planner went away; False when it did."""
    while not stop.is_set():
        try:
            handoff.put(item, timeout=0.05)
        except queue.Full:
            continue
        return True
    return False


_TASK_PLACEHOLDER: Final = "\x00task\x00"  # cannot occur in a job or task id (ID_PATTERN)
_ID_PLACEHOLDER: Final = "\x00commandId\x00"


class _DeleteMessages:
    """One job's deleteTask messages, equal to ``Command(...).to_message()`` but cheaper per task.

    The body is the command's canonical JSON with only the task id and command id encoded per task,
    around a template cut from ``Command.to_json`` itself; the first message of each job is checked
    against the full path, and a job whose check fails takes the full path for every task.
    """

    def __init__(self, account: str, job_id: str) -> None:
        self.account = account
        self.job_id = job_id
        template = self._command(_TASK_PLACEHOLDER).to_json().decode("ascii")
        head, _, rest = template.partition(_encode_json_string(_TASK_PLACEHOLDER))
        middle, _, tail = rest.partition(_encode_json_string(_ID_PLACEHOLDER))
        self._parts: tuple[str, str, str] | None = (head, middle, tail)
        self._checked = False
        # stable_id's readable form is this prefix plus the task id, whenever it fits: the planner only
        # passes task ids that passed ID_PATTERN, which is printable ASCII.
        prefix = f"retention:{account}:{job_id}:"
        self._id_prefix = prefix if COMMAND_ID_PATTERN.fullmatch(prefix) else None

    def _command(self, task_id: str) -> Command:
        command_id = _ID_PLACEHOLDER if task_id == _TASK_PLACEHOLDER else self._command_id(task_id)
        return Command(
            action="deleteTask",
            job_id=self.job_id,
            task_id=task_id,
            account=self.account,
            command_id=command_id,
            requested_by=REQUESTED_BY,
        )

    def _command_id(self, task_id: str) -> str:
        prefix = self._id_prefix
        if prefix is not None and len(prefix) + len(task_id) <= MAX_COMMAND_ID:
            return prefix + task_id
        return stable_id("retention", self.account, self.job_id, task_id)

    def message(self, task_id: str) -> Outbound:
        if self._parts is None:
            return self._command(task_id).to_message()
        command_id = self._command_id(task_id)
        head, middle, tail = self._parts
        body = f"{head}{_encode_json_string(task_id)}{middle}{_encode_json_string(command_id)}{tail}"
        message = Outbound(
            body=body.encode("ascii"),
            message_id=command_id,
            subject="deleteTask",
            application_properties={COMMAND_ID_PROPERTY: command_id},
            correlation_id=command_id,
        )
        if not self._checked:
            self._checked = True
            if message != self._command(task_id).to_message():
                self._parts = None
                return self._command(task_id).to_message()
        return message


def _listing_failed(counts: RetentionCounts, account: str, job_id: str | None, exc: Exception) -> None:
    counts.listing_errors += 1
    log.warning(
        "%s",
        json.dumps({"event": "retentionListingFailed", "account": account, "jobId": job_id, "error": str(exc)}),
    )


@dataclass(frozen=True)
class RetentionSummary:
    run_id: str
    started_at: datetime
    dry_run: bool
    cutoff: datetime
    jobs_scanned: int
    tasks_seen: int
    commands_planned: int
    commands_enqueued: int
    limit_reached: bool
    listing_errors: int
    elapsed_ms: int

    @property
    def skipped(self) -> int:
        """Tasks listed but not turned into a command (they failed the re-check on our side)."""
        return self.tasks_seen - self.commands_planned

    def event(self) -> dict[str, Any]:
        return {
            "event": SUMMARY_SUBJECT,
            "runId": self.run_id,
            "startedAt": _iso(self.started_at),
            "cutoff": _iso(self.cutoff),
            "dryRun": self.dry_run,
            "jobsScanned": self.jobs_scanned,
            "tasksSeen": self.tasks_seen,
            "commandsPlanned": self.commands_planned,
            "commandsEnqueued": self.commands_enqueued,
            "skipped": self.skipped,
            "limitReached": self.limit_reached,
            "listingErrors": self.listing_errors,
            "elapsedMs": self.elapsed_ms,
        }

    def message(self) -> Outbound:
        # decision="summary" keeps it out of subscriptions filtered on the outcome decisions
        # (e.g. the dead-letters subscription's "decision = 'deadLetter'").
        return Outbound(
            body=json_body(self.event()),
            message_id=f"retention-summary:{self.run_id}",
            subject=SUMMARY_SUBJECT,
            application_properties={"decision": "summary", "event": SUMMARY_SUBJECT},
            correlation_id=self.run_id,
        )


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _chunks(messages: Iterator[Outbound], size: int) -> Iterator[list[Outbound]]:
    while chunk := list(islice(messages, size)):
        yield chunk


def run_retention(batch: Lister, bus: Producer, settings: Settings, now: datetime) -> RetentionSummary:
    """One cleanup run: enqueue up to ``max_commands`` deletes (none in dry-run), log and publish a summary."""
    retention = settings.retention
    counts = RetentionCounts()
    started = time.perf_counter()
    planned = enqueued = 0
    # The run takes at most max_commands messages, so the listing may run that many tasks ahead.
    plan = plan_deletions(batch, retention, now, settings.api_version, counts, read_ahead=retention.max_commands)
    with closing(plan):
        for chunk in _chunks(islice(plan, retention.max_commands), ENQUEUE_CHUNK):
            planned += len(chunk)
            if not retention.dry_run:
                enqueued += bus.enqueue(chunk)
    summary = RetentionSummary(
        run_id=uuid.uuid4().hex,
        started_at=now,
        dry_run=retention.dry_run,
        cutoff=cutoff_time(now, retention.days),
        jobs_scanned=counts.jobs_scanned,
        tasks_seen=counts.tasks_seen,
        commands_planned=planned,
        commands_enqueued=enqueued,
        # Stopped at the cap; whatever is left waits for the next run. (Finding out whether anything is left
        # could mean listing every remaining job, which is exactly what the cap is there to prevent.)
        limit_reached=planned == retention.max_commands,
        listing_errors=counts.listing_errors,
        elapsed_ms=round((time.perf_counter() - started) * 1000),
    )
    log.info("%s", json.dumps(summary.event()))
    bus.publish(summary.message())
    return summary
