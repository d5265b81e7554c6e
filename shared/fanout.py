"""Expand a selector command one listing page per invocation (docs/design.md, "Fleet operations").

Each invocation of a selector message:

1. takes the targets the *previous* page chose (``continuation.pending``, carried in this message) and
   turns them into single-target commands (or, for ``jobSelect``, per-job ``select`` commands);
2. lists one page (the first with a server-side ``$filter`` / ``$select``, later ones by the
   ``odata.nextLink`` the continuation carries) and checks every item against the whole selector and the
   scope guard on our side; ``allTasksComplete`` / ``noTasks`` and the ``jobSelect`` budget come from Get
   Task Counts;
3. chooses this page's targets within the remaining budget (``limit``) and writes them, with the next link
   and the running totals, into a continuation message for the next page.

The processor then enqueues the commands of step 1, enqueues the continuation, publishes one ``fanOut``
outcome (``expanding``, or the selector's terminal decision on its last page) and settles. Everything it
sends has a deterministic id: a redelivered page (after a crash, a lost settlement, a failed publish)
enqueues the same ids again and duplicate detection drops them. Because a page's targets are carried
forward in the one continuation that survives duplicate detection, instead of being enqueued where they
were listed, a redelivery that lists a changed page (the targets' own commands ran meanwhile) can neither
act twice nor go past the limit.

Nothing here sends anything; one page and at most one page of counts calls is all the memory it needs.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any, Final, NamedTuple, Protocol
from urllib.parse import quote

from shared.batch_client import BatchAnswer, BatchError, UntrustedLink
from shared.config import FleetSettings
from shared.contract import (
    ID_PATTERN,
    MAX_COMMAND_ID,
    MAX_FIRST_TARGETS,
    MAX_PAGE,
    MAX_REQUESTED_BY,
    Command,
    Continuation,
    Selection,
    child_id,
    page_message_id,
)
from shared.messages import COMMAND_ID_PROPERTY, Outbound
from shared.outcome import EXPANDING, FanOut
from shared.policy import TRANSPORT_ERROR, Policy, Verdict
from shared.selectors import JOB_SELECT, TASK_SELECT, JobSelector, TaskSelector

# Items per listing page. A page's targets travel in the next page's message (64 KiB at most), so a page
# holds at most 500 ids of up to 64 characters. Pages that need Get Task Counts per job hold 100 jobs, so
# one invocation makes at most 101 Batch calls.
TASK_PAGE: Final = 500
JOB_PAGE: Final = 500
COUNTED_JOB_PAGE: Final = 100
# Get Task Counts calls of one page in flight at once: a page of 100 jobs waits for 13 round trips, not 100.
# Counting stops at the first wave after the budget runs out, so at most COUNTS_IN_FLIGHT - 1 calls are spent
# on jobs that no longer get a share.
COUNTS_IN_FLIGHT: Final = 8


class Lister(Protocol):
    """The part of ``BatchClient`` the expansion uses."""

    def list_page(
        self, account: str, path: str, params: Mapping[str, str], next_link: str | None = None, key: str | None = None
    ) -> BatchAnswer: ...

    def get_task_counts(self, account: str, job_id: str, key: str | None = None) -> BatchAnswer: ...


class PagePlan(NamedTuple):
    """What the processor does for one selector message, in this order: enqueue ``children``, enqueue
    ``continuation``, publish the outcome (``decision`` with ``fan_out``), settle."""

    decision: str  # expanding, succeeded, alreadyDone, retry or deadLetter
    fan_out: FanOut
    answer: BatchAnswer | None = None  # the listing's answer (None when nothing was listed)
    verdict: Verdict | None = None  # how a failed listing was decided
    children: tuple[Outbound, ...] = ()
    continuation: Outbound | None = None
    detail: str | None = None
    reason: str | None = None  # dead-letter reason


@dataclass
class _Page:
    """One listing page, evaluated."""

    listed: int = 0
    matched: int = 0
    targets: list[str] = field(default_factory=list)
    limits: list[int] = field(default_factory=list)
    remaining: int = 0
    limit_reached: bool = False
    failed: BatchAnswer | None = None  # a Get Task Counts call that failed


class Expander:
    def __init__(
        self,
        fleet: FleetSettings,
        batch: Lister,
        policy: Policy,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._fleet = fleet
        self._batch = batch
        self._policy = policy
        self._clock = clock
        # Threads start on first use, so an instance that never counts tasks has none.
        self._pool = ThreadPoolExecutor(COUNTS_IN_FLIGHT, thread_name_prefix="task-counts")

    def plan(self, selection: Selection) -> PagePlan:
        previous = selection.continuation
        children = tuple(_children(selection))
        if previous is not None and previous.next_link is None:
            return self._finish(selection, previous, children)
        as_of = previous.as_of if previous is not None else self._clock().astimezone(UTC).replace(microsecond=0)
        remaining = previous.remaining if previous is not None else selection.limit
        key = page_message_id(selection.command_id, selection.dry_run, selection.page)
        path, params = _listing(selection, self._fleet, as_of)
        try:
            answer = self._batch.list_page(
                selection.account, path, params, previous.next_link if previous else None, key
            )
        except UntrustedLink as exc:
            fan_out = _fan_out(selection, previous, _Page(remaining=remaining), len(children), more=False)
            detail = f"{selection.action} selector page {selection.page}: {exc}"
            return PagePlan("deadLetter", fan_out, None, None, children, None, detail, "UntrustedLink")
        items, next_link = _items(answer)
        if items is None:  # a refusal, or a 2xx that is not a listing (retried like any unreadable answer)
            failed = answer if not answer.ok else _unreadable(answer, "listing")
            return self._failed(selection, previous, failed, remaining, children)
        page = self._evaluate(selection, items, as_of, remaining)
        if page.failed is not None:
            return self._failed(selection, previous, page.failed, remaining, children)
        if page.remaining == 0 and next_link is not None:
            page.limit_reached = True
        if page.limit_reached or selection.page >= MAX_PAGE:
            next_link = None
        return self._continue(
            selection, previous, answer=answer, page=page, next_link=next_link, as_of=as_of, children=children
        )

    def stalled(self, selection: Selection) -> FanOut:
        """The fanOut of a page that could not be expanded (the expansion itself failed)."""
        previous = selection.continuation
        remaining = previous.remaining if previous is not None else selection.limit
        return _fan_out(selection, previous, _Page(remaining=remaining), 0, more=False)

    # --- one page ------------------------------------------------------------------------------------------

    def _evaluate(
        self, selection: Selection, items: Sequence[Mapping[str, Any]], as_of: datetime, budget: int
    ) -> _Page:
        select, job_select = selection.select, selection.job_select
        if isinstance(select, TaskSelector) and job_select is None:
            return _one_target_each(len(items), _matching_ids(items, select.matcher(as_of)), budget)
        jobs = job_select if job_select is not None else select
        assert isinstance(jobs, JobSelector)
        scope = self._fleet.scope
        candidates = _matching_ids(items, lambda item: jobs.matches(item, scope, as_of))
        if not (jobs.needs_counts or job_select is not None):
            return _one_target_each(len(items), candidates, budget)
        page = _Page(listed=len(items), remaining=budget)
        for start in range(0, len(candidates), COUNTS_IN_FLIGHT):
            if page.remaining == 0:
                page.limit_reached = True  # counting further jobs would only spend calls
                return page
            wave = candidates[start : start + COUNTS_IN_FLIGHT]
            for job_id, answer in zip(wave, self._task_counts(selection.account, wave), strict=True):
                if page.remaining == 0:
                    page.limit_reached = True
                    return page
                bound = self._bound(selection, jobs, answer, page)
                if page.failed is not None:
                    return page
                if bound is None:
                    continue
                page.matched += 1
                share = min(page.remaining, bound)
                page.targets.append(job_id)
                if job_select is not None:
                    page.limits.append(share)
                page.remaining -= share
        return page

    def _task_counts(self, account: str, job_ids: Sequence[str]) -> list[BatchAnswer]:
        """Get Task Counts of each job, in order; the calls of a wave run side by side, as each waits on Batch."""
        if len(job_ids) == 1:
            return [self._batch.get_task_counts(account, job_ids[0])]
        # Each call runs in a copy of this invocation's context (its trace and delivery), one copy per call.
        calls = [
            self._pool.submit(contextvars.copy_context().run, self._batch.get_task_counts, account, job_id)
            for job_id in job_ids
        ]
        return [call.result() for call in calls]

    def _bound(self, selection: Selection, jobs: JobSelector, answer: BatchAnswer, page: _Page) -> int | None:
        """How many targets a job stands for, from its Get Task Counts: 1 for a job action, the task budget it
        may need for jobSelect; None when it does not match (or its counts failed: ``page.failed``)."""
        counts = _counts(answer)
        if counts is None:
            if answer.code != "JobNotFound":  # a job deleted since the listing simply does not match
                page.failed = answer if not answer.ok else _unreadable(answer, "Get Task Counts")
            return None
        if not jobs.matches_counts(counts):
            return None
        if selection.job_select is None:
            return 1
        assert isinstance(selection.select, TaskSelector)
        bound = selection.select.upper_bound(counts)
        return bound if bound > 0 else None

    # --- the plans -----------------------------------------------------------------------------------------

    def _continue(
        self,
        selection: Selection,
        previous: Continuation | None,
        *,
        answer: BatchAnswer,
        page: _Page,
        next_link: str | None,
        as_of: datetime,
        children: tuple[Outbound, ...],
    ) -> PagePlan:
        first = _first_targets(selection, previous, page) if selection.dry_run else ()
        pending = () if selection.dry_run else tuple(page.targets)
        more = next_link is not None or bool(pending)
        totals = _totals(previous, page, len(children))
        fan_out = _fan_out(selection, previous, page, len(children), more=more, first=first)
        if not more:
            return PagePlan(
                "succeeded", fan_out, answer, None, children, None, _done(selection, fan_out, selection.page)
            )
        continuation = Continuation(
            page=selection.page + 1,
            next_link=next_link,
            as_of=as_of,
            remaining=page.remaining,
            listed=totals[0],
            matched=totals[1],
            selected=totals[2],
            enqueued=totals[3],
            pending=pending,
            pending_limits=tuple(page.limits) if not selection.dry_run else (),
            first_targets=first,
            limit_reached=page.limit_reached,
        )
        follow = selection.with_continuation(continuation).to_message()
        detail = (
            f"page {selection.page}: listed {page.listed}, matched {page.matched}, selected {len(page.targets)}"
            + (f", enqueued {len(children)}" if children else "")
            + ("; the next page follows" if next_link else "; the last targets follow")
        )
        return PagePlan(EXPANDING, fan_out, answer, None, children, follow, detail)

    def _finish(self, selection: Selection, previous: Continuation, children: tuple[Outbound, ...]) -> PagePlan:
        """The message after the last listed page: enqueue its targets and end the selector."""
        page = _Page(remaining=previous.remaining, limit_reached=previous.limit_reached)
        fan_out = _fan_out(selection, previous, page, len(children), more=False)
        detail = _done(selection, fan_out, pages=selection.page - 1)
        return PagePlan("succeeded", fan_out, None, None, children, None, detail)

    def _failed(
        self,
        selection: Selection,
        previous: Continuation | None,
        answer: BatchAnswer,
        remaining: int,
        children: tuple[Outbound, ...],
    ) -> PagePlan:
        verdict = self._policy.decide_listing(answer.status, answer.code)
        fan_out = _fan_out(selection, previous, _Page(remaining=remaining), len(children), more=False)
        status = f"HTTP {answer.status}" if answer.status is not None else "no HTTP answer"
        error = f" {answer.error.code}: {answer.error.message}" if answer.error else ""
        detail = f"{selection.action} selector page {selection.page}: listing gave {status}{error}"
        reason = None
        if verdict.decision == "deadLetter":
            reason = (
                "PreconditionFailed"
                if answer.code == "ConditionNotMet"
                else (answer.code or f"HttpStatus{answer.status}")
            )
        return PagePlan(verdict.decision, fan_out, answer, verdict, children, None, detail, reason)


# --- helpers ---------------------------------------------------------------------------------------------------


def _matching_ids(items: Sequence[Mapping[str, Any]], match: Callable[[Mapping[str, Any]], bool]) -> list[str]:
    """The ids of the listed items that have a valid Batch id and match, in page order."""
    valid = ID_PATTERN.fullmatch
    return [item_id for item in items if isinstance(item_id := item.get("id"), str) and valid(item_id) and match(item)]


def _one_target_each(listed: int, matched: list[str], budget: int) -> _Page:
    """A page whose every match is one target (a task, or a job for a job action) while the budget lasts."""
    targets = matched[:budget]
    return _Page(listed, len(matched), targets, remaining=budget - len(targets), limit_reached=len(matched) > budget)


def _listing(selection: Selection, fleet: FleetSettings, as_of: datetime) -> tuple[str, dict[str, str]]:
    """The first page's path and query; later pages follow the next link, which carries the same query."""
    select, job_select = selection.select, selection.job_select
    if isinstance(select, TaskSelector) and job_select is None:
        assert selection.job_id is not None  # the contract requires jobId for a task selector
        where = select.odata_filter(as_of)
        params = {"$select": TASK_SELECT, "maxresults": str(TASK_PAGE)}
        path = f"/jobs/{quote(selection.job_id, safe='')}/tasks"
    else:
        jobs = job_select if job_select is not None else select
        assert isinstance(jobs, JobSelector)
        where = jobs.odata_filter(fleet.scope, as_of)
        size = COUNTED_JOB_PAGE if jobs.needs_counts or job_select is not None else JOB_PAGE
        params = {"$select": JOB_SELECT, "maxresults": str(size)}
        path = "/jobs"
    if where:
        params["$filter"] = where
    return path, params


def _items(answer: BatchAnswer) -> tuple[Sequence[Mapping[str, Any]] | None, str | None]:
    """The page's items and next link; None when the page failed or is not a listing."""
    if not answer.ok or answer.body is None:
        return None, None
    values = answer.body.get("value", [])
    if not isinstance(values, list) or not all(isinstance(item, dict) for item in values):
        return None, None
    link = answer.body.get("odata.nextLink")
    return values, link if isinstance(link, str) and link else None


def _counts(answer: BatchAnswer) -> dict[str, int] | None:
    if not answer.ok or answer.body is None:
        return None
    counts = answer.body.get("taskCounts")
    if not isinstance(counts, dict):
        return None
    names = ("active", "running", "completed", "succeeded", "failed")
    values = {name: counts.get(name) for name in names}
    if not all(isinstance(value, int) and not isinstance(value, bool) and value >= 0 for value in values.values()):
        return None
    return {name: int(value) for name, value in values.items() if isinstance(value, int)}


def _unreadable(answer: BatchAnswer, what: str) -> BatchAnswer:
    """A 2xx whose body is not what the operation returns: retried like any unreadable answer."""
    return BatchAnswer(
        status=None,
        error=BatchError(TRANSPORT_ERROR, f"unreadable {what} answer"),
        request_id=answer.request_id,
        client_request_id=answer.client_request_id,
        duration_ms=answer.duration_ms,
    )


def _requested_by(selection: Selection) -> str:
    return (selection.requested_by or f"selector:{selection.command_id}")[:MAX_REQUESTED_BY]


def _children(selection: Selection) -> list[Outbound]:
    """The commands of the targets the previous page chose; the same ids whenever this message runs."""
    previous = selection.continuation
    if previous is None or not previous.pending:
        return []
    requested_by = _requested_by(selection)
    if selection.kind == "tasks":
        assert selection.job_id is not None
        return _task_commands(selection, selection.job_id, previous.pending, requested_by)
    messages = []
    if selection.kind == "jobs":
        for job_id in previous.pending:
            command = Command(
                action=selection.action,
                job_id=job_id,
                task_id=None,
                account=selection.account,
                command_id=child_id(selection.command_id, job_id),
                reason=selection.reason,
                force=selection.force,
                requested_by=requested_by,
            )
            messages.append(command.to_message())
    else:
        for job_id, limit in zip(previous.pending, previous.pending_limits, strict=True):
            per_job = Selection(
                action=selection.action,
                account=selection.account,
                command_id=child_id(selection.command_id, job_id),
                job_id=job_id,
                select=selection.select,
                job_select=None,
                limit=limit,
                requested_by=requested_by,
            )
            messages.append(per_job.to_message())
    return messages


def _task_commands(selection: Selection, job_id: str, task_ids: Sequence[str], requested_by: str) -> list[Outbound]:
    """The task commands of one page, each ``Command(...).to_message()``, built from a template.

    Only the task id and the commandId differ between them, so the rest of the body is encoded once, with
    the encoder ``Command.to_json`` uses for strings (JSON-encoding a dict per task was most of a page's
    CPU). The template's first message is compared with the one ``Command.to_message`` makes; if they
    ever differ, every message of the page is made by ``Command.to_message`` instead.
    """

    def canonical(task_id: str) -> Outbound:
        command_id = child_id(selection.command_id, job_id, task_id)
        command = Command(selection.action, job_id, task_id, selection.account, command_id, requested_by=requested_by)
        return command.to_message()

    if not task_ids:
        return []
    action, encode = selection.action, encode_basestring_ascii
    head = f'{{"action":{encode(action)},"jobId":{encode(job_id)},"account":{encode(selection.account)},"taskId":"'
    tail = f'","requestedBy":{encode(requested_by)}}}'
    parent = selection.command_id
    # Task ids are Batch ids (the continuation's ids are checked when it is read): letters, digits, "-" and
    # "_". They need no JSON escaping, and "<parent>/<jobId>/<taskId>" is child_id's readable id whenever it
    # is short enough; its JSON string is the escaped prefix (without its closing quote) and the task id.
    readable = f"{parent}/{job_id}/"
    readable_json = encode(readable)[:-1]
    room = MAX_COMMAND_ID - len(readable)

    def templated(task_id: str) -> Outbound:
        if len(task_id) <= room:
            command_id, id_json = readable + task_id, readable_json + task_id
        else:
            command_id = child_id(parent, job_id, task_id)
            id_json = encode(command_id)[:-1]
        body = f'{head}{task_id}","commandId":{id_json}{tail}'.encode()
        return Outbound(body, command_id, action, {COMMAND_ID_PROPERTY: command_id}, command_id)

    first = canonical(task_ids[0])
    if templated(task_ids[0]) != first:
        return [first, *(canonical(task_id) for task_id in task_ids[1:])]
    return [first, *(templated(task_id) for task_id in task_ids[1:])]


def _totals(previous: Continuation | None, page: _Page, enqueued: int) -> tuple[int, int, int, int]:
    listed, matched, selected, sent = (
        (previous.listed, previous.matched, previous.selected, previous.enqueued) if previous else (0, 0, 0, 0)
    )
    return listed + page.listed, matched + page.matched, selected + len(page.targets), sent + enqueued


def _first_targets(selection: Selection, previous: Continuation | None, page: _Page) -> tuple[str, ...]:
    first = list(previous.first_targets) if previous is not None else []
    for target in page.targets:
        if len(first) >= MAX_FIRST_TARGETS:
            break
        first.append(f"{selection.job_id}/{target}" if selection.kind == "tasks" else target)
    return tuple(first)


def _fan_out(
    selection: Selection,
    previous: Continuation | None,
    page: _Page,
    enqueued: int,
    *,
    more: bool,
    first: tuple[str, ...] | None = None,
) -> FanOut:
    totals = _totals(previous, page, enqueued)
    if first is None:
        first = previous.first_targets if previous is not None and selection.dry_run else ()
    return FanOut(
        kind=selection.kind,
        page=selection.page,
        listed=page.listed,
        matched=page.matched,
        selected=len(page.targets),
        enqueued=enqueued,
        total_listed=totals[0],
        total_matched=totals[1],
        total_selected=totals[2],
        total_enqueued=totals[3],
        limit=selection.limit,
        remaining=page.remaining,
        limit_reached=page.limit_reached,
        more=more,
        first_targets=first,
    )


def _done(selection: Selection, fan_out: FanOut, pages: int) -> str:
    unit = {"tasks": "tasks", "jobs": "jobs", "jobsThenTasks": "per-job task selectors"}[selection.kind]
    limit = f"; stopped at the limit of {selection.limit}" if fan_out.limit_reached else ""
    if selection.dry_run:
        shown = ", ".join(fan_out.first_targets)
        return (
            f"dry run: {selection.action} would act on {fan_out.total_selected} {unit} "
            f"({fan_out.total_listed} listed over {pages} pages){limit}" + (f"; first: {shown}" if shown else "")
        )
    return (
        f"{selection.action} selector done: {fan_out.total_enqueued} {unit} enqueued "
        f"({fan_out.total_listed} listed over {pages} pages){limit}"
    )
