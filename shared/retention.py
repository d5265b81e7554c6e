"""Retention cleanup: enqueue one deleteTask command per old completed task (DESIGN.md section 6).

Everything streams. Job and task listings are read one page at a time (the server filters and trims
them with ``$filter`` and ``$select``), commands are generated lazily and sent in fixed-size chunks, so
memory does not grow with the number of tasks. Command ids are derived from (account, job, task), so
an overlapping or repeated run produces the same ``message_id`` and the queue's duplicate detection
drops the repeat.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Generator, Iterator, Mapping
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, Final, Protocol
from urllib.parse import quote

from shared.batch_client import BatchListError, UntrustedLink
from shared.config import RetentionSettings, Settings
from shared.contract import ID_PATTERN, Command, stable_id
from shared.messages import Outbound, Producer, json_body

log = logging.getLogger("batch_lifecycle")

PAGE_SIZE: Final = "1000"  # Batch's largest maxresults: fewest round trips for a bounded page
# Commands handed to the gateway at a time. The gateway holds its queue-sender lock while it reads the
# iterable, so feeding it chunks keeps the Batch listing calls outside that lock (retry copies scheduled
# by process_command on other threads are not held up) and bounds what is in memory at once.
ENQUEUE_CHUNK: Final = 500
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
    moment = _parse_time(task.get("stateTransitionTime"))
    info = task.get("executionInfo")
    result = info.get("result") if isinstance(info, Mapping) else None
    return (
        task.get("state") == "completed"
        and moment is not None
        and moment < cutoff
        and (result == "success" or not success_only)
        and isinstance(task.get("id"), str)
        and ID_PATTERN.fullmatch(task["id"]) is not None
    )


@dataclass
class RetentionCounts:
    """Running totals, updated while the plan is consumed."""

    jobs_scanned: int = 0
    tasks_seen: int = 0
    listing_errors: int = 0


def plan_deletions(
    batch: Lister, settings: RetentionSettings, now: datetime, api_version: str, counts: RetentionCounts
) -> Generator[Outbound, None, None]:
    """Lazily yield one deleteTask command message per qualifying task of every selected account."""
    scan = _Scan(batch, settings, cutoff_time(now, settings.days), api_version, counts)
    for account in settings.accounts:
        for job_id in scan.job_ids(account):
            for task_id in scan.task_ids(account, job_id):
                command = Command(
                    action="deleteTask",
                    job_id=job_id,
                    task_id=task_id,
                    account=account,
                    command_id=stable_id("retention", account, job_id, task_id),
                    requested_by=REQUESTED_BY,
                )
                yield command.to_message()


@dataclass(frozen=True)
class _Scan:
    """The two listings of one run, each streamed page by page."""

    batch: Lister
    settings: RetentionSettings
    cutoff: datetime
    api_version: str
    counts: RetentionCounts

    def job_ids(self, account: str) -> Iterator[str]:
        params = {"api-version": self.api_version, "$select": "id,state", "maxresults": PAGE_SIZE}
        where = job_filter(self.settings)
        if where:
            params["$filter"] = where
        try:
            for job in self.batch.list_values(account, "/jobs", params):
                self.counts.jobs_scanned += 1
                job_id = job.get("id")
                if isinstance(job_id, str) and ID_PATTERN.fullmatch(job_id):
                    yield job_id
        except (BatchListError, UntrustedLink) as exc:
            _listing_failed(self.counts, account, None, exc)

    def task_ids(self, account: str, job_id: str) -> Iterator[str]:
        success_only = self.settings.task_result == "success"
        params = {
            "api-version": self.api_version,
            "$filter": task_filter(self.settings, self.cutoff),
            "$select": "id,state,stateTransitionTime" + (",executionInfo" if success_only else ""),
            "maxresults": PAGE_SIZE,
        }
        try:
            for task in self.batch.list_values(account, f"/jobs/{quote(job_id, safe='')}/tasks", params):
                self.counts.tasks_seen += 1
                if qualifies(task, self.cutoff, success_only):
                    yield task["id"]
        except (BatchListError, UntrustedLink) as exc:
            # One job failing (e.g. deleted between the two listings) must not stop the others.
            _listing_failed(self.counts, account, job_id, exc)


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
    with closing(plan_deletions(batch, retention, now, settings.api_version, counts)) as plan:
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
